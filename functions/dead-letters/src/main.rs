//! The `dead-letters` Lambda: each message that reached the jobs queue's dead-letter queue fails
//! its job with `processing_failed`, unless the job already ended.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ConfigSource, connect_aws_without_provider_keys};
use prism_lambda::handle_dead_letter_event;

#[tokio::main]
async fn main() -> Result<(), Error> {
    prism_lambda::init_tracing();
    // Lambda polls the queue for us: this function never receives, so no receive wait.
    // Never calls the upstream, so its role needs no access to provider keys.
    let app = connect_aws_without_provider_keys(
        ConfigSource::Parameter,
        |key| std::env::var(key).ok(),
        Duration::ZERO,
    )
    .await?;
    let deps = &app.deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, Error>(handle_dead_letter_event(deps, event.payload).await)
    }))
    .await
}

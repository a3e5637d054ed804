//! The `async-worker` Lambda: each SQS batch from the jobs queue runs through the core worker,
//! and the records to come back are reported as partial batch failures.

use std::time::Duration;

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ConfigSource, connect_aws};
use prism_lambda::{handle_job_event, worker_deadline};

#[tokio::main]
async fn main() -> Result<(), Error> {
    prism_lambda::init_tracing();
    // Lambda polls the queue for us: this function never receives, so no receive wait.
    let app = connect_aws(
        ConfigSource::Parameter,
        |key| std::env::var(key).ok(),
        Duration::ZERO,
    )
    .await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = worker_deadline(event.context.deadline);
        let response =
            handle_job_event(&app.deps, &app.backend.queue, event.payload, deadline).await;
        Ok::<_, Error>(response)
    }))
    .await
}

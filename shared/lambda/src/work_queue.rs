//! The whole life of a Lambda that drains one work queue (jobs, or a batch stage): connect once,
//! then run every SQS batch through the core's dispatch with the invocation's deadline.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ProviderKeys, connect_lambda};
use prism_core::Stage;

use crate::{flush_telemetry, handle_work_event, init_tracing, worker_deadline};

/// Runs the function of `stage`, whose queue its trigger drains (the visibility changes that
/// ask SQS for a later redelivery go to that queue).
pub async fn serve_work_queue(stage: Stage) -> Result<(), Error> {
    init_tracing()?;
    // Webhook delivery never calls a provider, so its function is given no provider key.
    let keys = if stage == Stage::Webhooks {
        ProviderKeys::Skip
    } else {
        ProviderKeys::Fetch
    };
    let app = connect_lambda(keys).await?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = worker_deadline(event.context.deadline);
        let response = handle_work_event(
            &app.deps,
            app.backend.queues.get(stage),
            event.payload,
            deadline,
        )
        .await;
        flush_telemetry().await;
        Ok::<_, Error>(response)
    }))
    .await
}

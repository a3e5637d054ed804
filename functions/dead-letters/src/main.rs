//! The `dead-letters` Lambda: each message that reached a dead-letter queue (jobs, or a batch
//! stage) settles its item: a job fails with `processing_failed` unless it already ended, a batch
//! stage settles its batch.

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ProviderKeys, connect_lambda};
use prism_lambda::cli::{FunctionInfo, handle_flags};
use prism_lambda::handle_dead_letter_event;

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "dead-letters",
    about: "Settles every dead-lettered item: a job fails with processing_failed, a batch's \
            planning fails the batch, a chunk's unfinished lines fail, a finalization is tried \
            again.",
    trigger: "SQS event sources on the jobs dead-letter queue (batches of up to 10) and the three \
              batch dead-letter queues (one message per invocation), partial batch responses.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    handle_flags(&FUNCTION);
    prism_lambda::init_tracing()?;
    // Never calls the upstream, so its role needs no access to provider keys.
    let app = connect_lambda(ProviderKeys::Skip).await?;
    let deps = &app.deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let response = handle_dead_letter_event(deps, event.payload).await;
        prism_lambda::flush_telemetry().await;
        Ok::<_, Error>(response)
    }))
    .await
}

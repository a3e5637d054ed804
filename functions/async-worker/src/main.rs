//! The `async-worker` Lambda: each SQS batch from the jobs queue runs through the core worker,
//! and the records to come back are reported as partial batch failures.

use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "async-worker",
    about: "Runs async and scheduled chat-completion jobs through the upstream, with retries, \
            leases and cancellation.",
    trigger: "SQS event source on the jobs queue (JobsQueue): batches of up to 10 records, partial \
              batch responses (ReportBatchItemFailures).",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::serve_work_queue(prism_lambda::Stage::Jobs).await
}

//! The `async-worker` Lambda: each SQS batch from the jobs queue runs through the core worker,
//! and the records to come back are reported as partial batch failures.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prism_lambda::serve_work_queue(|backend| &backend.queue).await
}

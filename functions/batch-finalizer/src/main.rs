//! The `batch-finalizer` Lambda: assembles a finished, cancelled or expired batch's output and error files (the batch finalize queue).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prism_lambda::serve_work_queue(|backend| &backend.finalize_queue).await
}

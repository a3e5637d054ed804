//! The `batch-processor` Lambda: runs the lines of one batch chunk, checkpointing results under the chunk's lease (the batch chunk queue).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prism_lambda::serve_work_queue(|backend| &backend.chunk_queue).await
}

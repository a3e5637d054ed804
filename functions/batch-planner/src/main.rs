//! The `batch-planner` Lambda: validates a batch's input file in one streamed pass and writes its chunk records (the batch planning queue).

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    prism_lambda::serve_work_queue(|backend| &backend.plan_queue).await
}

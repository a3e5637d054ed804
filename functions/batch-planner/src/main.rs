//! The `batch-planner` Lambda: validates a batch's input file in one streamed pass and writes its
//! chunk records (the batch planning queue).

use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "batch-planner",
    about: "Validates a batch's input file in one streamed pass and writes its chunk records, then \
            queues the chunks.",
    trigger: "SQS event source on the batch plan queue (BatchPlanQueue): one message per \
              invocation, partial batch responses.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::serve_work_queue(prism_lambda::Stage::Plan).await
}

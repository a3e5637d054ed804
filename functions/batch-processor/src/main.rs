//! The `batch-processor` Lambda: runs the lines of one batch chunk, checkpointing results under
//! the chunk's lease (the batch chunk queue).

use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "batch-processor",
    about: "Runs the lines of one batch chunk against the upstream, checkpointing result parts \
            under the chunk's lease.",
    trigger: "SQS event source on the batch chunk queue (BatchChunkQueue): one message per \
              invocation, partial batch responses.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::serve_work_queue(prism_lambda::Stage::Chunks).await
}

//! The `batch-finalizer` Lambda: assembles a finished, cancelled or expired batch's output and
//! error files (the batch finalize queue).

use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "batch-finalizer",
    about: "Assembles a finished, cancelled or expired batch's output and error files and \
            completes the batch.",
    trigger: "SQS event source on the batch finalize queue (BatchFinalizeQueue): one message per \
              invocation, partial batch responses.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::serve_work_queue(prism_lambda::Stage::Finalize).await
}

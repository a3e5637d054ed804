//! The `webhooks` Lambda: delivers webhook events for finished work to tenants' endpoints (the
//! webhooks queue).

use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "webhooks",
    about: "Delivers webhook events for finished jobs and batches to the tenants' endpoints, \
            signed with Standard Webhooks, retrying with backoff for up to 72 hours.",
    trigger: "SQS event source on the webhooks queue (WebhooksQueue): up to ten events per \
              invocation, partial batch responses.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::serve_work_queue(prism_lambda::Stage::Webhooks).await
}

//! The `reconciler` Lambda: one reconciler pass per invocation (a schedule fires it), answering
//! `{"retriggered": N, "purged": N}`.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ProviderKeys, connect_lambda};
use prism_lambda::cli::{FunctionInfo, handle_flags};
use prism_lambda::handle_reconcile_event;

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "reconciler",
    about: "One reconciler pass per invocation: re-triggers stranded jobs and what unfinished \
            batches wait for, purges expired rows; answers {\"retriggered\": N, \"purged\": N, \
            ...}.",
    trigger: "An EventBridge rule, rate(1 minute) (\"Scheduled Event\"); the event content is \
              ignored.",
    env: &[],
};

#[tokio::main]
async fn main() -> Result<(), Error> {
    handle_flags(&FUNCTION);
    prism_lambda::init_tracing()?;
    // Never calls the upstream, so its role needs no access to provider keys.
    let app = connect_lambda(ProviderKeys::Skip).await?;
    let deps = &app.deps;
    // The event's content does not matter: every invocation is one full pass.
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let summary = handle_reconcile_event(deps).await;
            prism_lambda::flush_telemetry().await;
            let summary = summary?;
            Ok::<_, Error>(serde_json::to_value(summary)?)
        },
    ))
    .await
}

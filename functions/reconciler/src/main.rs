//! The `reconciler` Lambda: one reconciler pass per invocation (a schedule fires it), answering
//! `{"retriggered": N, "purged": N}`.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, service_fn};
use prism_app::aws::{ConfigSource, connect_aws_without_provider_keys};
use prism_lambda::handle_reconcile_event;

#[tokio::main]
async fn main() -> Result<(), Error> {
    prism_lambda::init_tracing();
    // This function only enqueues; it never receives, so no receive wait.
    // Never calls the upstream, so its role needs no access to provider keys.
    let app = connect_aws_without_provider_keys(
        ConfigSource::Parameter,
        |key| std::env::var(key).ok(),
        Duration::ZERO,
    )
    .await?;
    let deps = &app.deps;
    // The event's content does not matter: every invocation is one full pass.
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let summary = handle_reconcile_event(deps).await?;
            Ok::<_, Error>(serde_json::to_value(summary)?)
        },
    ))
    .await
}

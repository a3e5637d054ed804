//! The `api` Lambda: Prism's HTTP API (the same axum router as `prism serve`) behind a function
//! URL with response streaming, so synchronous SSE completions are relayed as they arrive.

use std::sync::Arc;
use std::time::Duration;

use prism_app::aws::{ConfigSource, connect_aws};
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache, router};

/// A function URL invocation ends at 15 minutes; a buffered call answers 504 before that.
const BUFFERED_DEADLINE: Duration = Duration::from_secs(14 * 60 + 30);

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    prism_lambda::init_tracing();
    // Built once per sandbox and reused by every invocation it serves. This function never
    // receives from a queue, so the receive wait is irrelevant.
    let app = connect_aws(
        ConfigSource::Parameter,
        |key| std::env::var(key).ok(),
        Duration::ZERO,
    )
    .await?;
    let limits = HttpLimits {
        max_body_bytes: app.config.http.max_body_bytes,
        sync_deadline: Some(app.config.http.sync_deadline.unwrap_or(BUFFERED_DEADLINE)),
    };
    let state = AppState {
        keys: KeyCache::new(Arc::new(app.backend.keys.clone()), DEFAULT_KEY_CACHE_TTL),
        limits,
        deps: app.deps,
    };
    lambda_http::run_with_streaming_response(router(state)).await
}

//! The `api` Lambda: Prism's HTTP API (the same axum router as `prism serve`) behind API Gateway
//! (a REST API whose integration streams the response) and, when enabled, a function URL with
//! response streaming, so synchronous SSE completions are relayed as they arrive.

use std::sync::Arc;
use std::time::Duration;

use lambda_http::tower::ServiceBuilder;
use prism_app::aws::{ConfigSource, connect_aws};
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache, router};
use prism_lambda::cli::{FunctionInfo, handle_flags};

const FUNCTION: FunctionInfo = FunctionInfo {
    name: "api",
    about: "Prism's OpenAI-compatible HTTP API (chat completions, async and scheduled jobs, files, \
            batches), answering every request with a streamed response.",
    trigger: "HTTP: the API Gateway REST API's Lambda proxy integration (payload 1.0, \
              responseTransferMode STREAM; the stage is stripped from the path) or the function \
              URL (payload 2.0, InvokeMode RESPONSE_STREAM).",
    env: &[],
};

/// A buffered (non-streamed) call sends nothing until its upstream has answered, and API
/// Gateway's regional endpoints close a stream idle for 5 minutes; such a call answers 504 (with
/// `x-should-retry: false`) before that. Behind the function URL alone, `http.sync_deadline` can
/// raise it to just under the 15-minute invocation limit.
const BUFFERED_DEADLINE: Duration = Duration::from_secs(4 * 60 + 45);

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    handle_flags(&FUNCTION);
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
        max_inflight_body_bytes: app.config.http.max_inflight_body_bytes,
        // The Lambda event carries the whole body: there is nothing to wait for.
        body_read_timeout: None,
    };
    let state = AppState {
        keys: KeyCache::new(Arc::new(app.backend.keys.clone()), DEFAULT_KEY_CACHE_TTL),
        limits,
        deps: app.deps,
    };
    // API Gateway events carry their stage, which lambda_http puts in front of the path.
    let service = ServiceBuilder::new()
        .map_request(prism_lambda::strip_stage)
        .service(router(state));
    lambda_http::run_with_streaming_response(service).await
}

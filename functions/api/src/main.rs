//! The `api` Lambda: Prism's HTTP API (the same axum router as `prism serve`) behind API Gateway
//! (a REST API whose integration streams the response) and, when enabled, a function URL with
//! response streaming, so synchronous SSE completions are relayed as they arrive.

use std::convert::Infallible;
use std::sync::Arc;

use lambda_http::tower::ServiceBuilder;
use prism_app::aws::{ProviderKeys, connect_lambda};
use prism_app::http::{HttpHost, app_state};
use prism_http::router;
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

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    handle_flags(&FUNCTION);
    prism_lambda::init_tracing()?;
    // Built once per sandbox and reused by every invocation it serves.
    let app = connect_lambda(ProviderKeys::Fetch).await?;
    let keys = Arc::new(app.backend.keys.clone());
    let state = app_state(&app.config, app.deps, keys, HttpHost::Lambda);
    // API Gateway events carry their stage, which lambda_http puts in front of the path.
    let service = ServiceBuilder::new()
        .map_request(prism_lambda::strip_stage)
        // Once the response head is ready (what the request metrics time); the body may still
        // be streaming, and spans that end with it are sent at a later flush.
        .and_then(|response| async move {
            prism_lambda::flush_telemetry().await;
            Ok::<_, Infallible>(response)
        })
        .service(router(state));
    lambda_http::run_with_streaming_response(service).await
}

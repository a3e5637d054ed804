//! The forwarded OpenAI endpoints (chat completions, completions, embeddings, moderations) and
//! the model list: relayed to the provider at once, or stored as async jobs, and the one
//! synchronous relay path `/v1/responses` reuses.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use prism_core::ApiEndpoint;
use prism_core::jobs::service::model_not_found;
use prism_core::requests::summarize_request;
use prism_core::{TenantId, jobs};

use crate::error::ApiError;
use crate::openapi::{
    AsyncJobStored, ChatCompletion, ChatCompletionRequest, CompletionHeaders,
    CreateCompletionRequest, CreateEmbeddingRequest, CreateModerationRequest, ErrorResponse,
    UpstreamAnswer, UpstreamErrors,
};
use crate::request::{BodyBudget, IdPath, async_mode, idempotency_key};
use crate::routes::{AppState, read_json_body};
use crate::wire::{JobObject, ModelList, ModelObject};

#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "chat",
    params(CompletionHeaders),
    request_body(content = ChatCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's completion: JSON, or server-sent events with `stream: true`.", content(
            (ChatCompletion = "application/json"),
            (String = "text/event-stream"),
        )),
        AsyncJobStored,
        (status = 502, description = "The upstream failed or answered something that is not a completion.", body = ErrorResponse),
        UpstreamErrors,
    ),
)]
pub(crate) async fn chat_completions(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    budget: Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    forward(
        ApiEndpoint::ChatCompletions,
        state,
        tenant,
        budget,
        headers,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/completions",
    tag = "embeddings",
    params(CompletionHeaders),
    request_body(content = CreateCompletionRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's text completion: JSON, or server-sent events with `stream: true`.", content(
            (UpstreamAnswer = "application/json"),
            (String = "text/event-stream"),
        )),
        AsyncJobStored,
        (status = 502, description = "The upstream failed or answered something that is not JSON.", body = ErrorResponse),
        UpstreamErrors,
    ),
)]
pub(crate) async fn completions(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    budget: Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    forward(
        ApiEndpoint::Completions,
        state,
        tenant,
        budget,
        headers,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/embeddings",
    tag = "embeddings",
    params(CompletionHeaders),
    request_body(content = CreateEmbeddingRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's embeddings list.", body = UpstreamAnswer),
        AsyncJobStored,
        (status = 502, description = "The upstream failed or answered something that is not JSON.", body = ErrorResponse),
        UpstreamErrors,
    ),
)]
pub(crate) async fn embeddings(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    budget: Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    forward(
        ApiEndpoint::Embeddings,
        state,
        tenant,
        budget,
        headers,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/v1/moderations",
    tag = "embeddings",
    params(CompletionHeaders),
    request_body(content = CreateModerationRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's moderation result.", body = UpstreamAnswer),
        AsyncJobStored,
        (status = 502, description = "The upstream failed or answered something that is not JSON.", body = ErrorResponse),
        UpstreamErrors,
    ),
)]
pub(crate) async fn moderations(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    budget: Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    forward(
        ApiEndpoint::Moderations,
        state,
        tenant,
        budget,
        headers,
        body,
    )
    .await
}

/// A request to a forwarded endpoint: relayed at once, or stored as an async job with
/// `x-prism-async: true`.
async fn forward(
    endpoint: ApiEndpoint,
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Headers first: a refused request is never buffered.
    let is_async = async_mode(&headers)?;
    let key = if is_async {
        idempotency_key(&headers)?
    } else {
        None
    };
    let held = read_json_body(&state, &budget, &headers, body).await?;
    let body = held.bytes.clone();
    if is_async {
        return submit_async(&state, &tenant, endpoint, body, key).await;
    }
    let summary = summarize_request(endpoint, &body)?;
    relay_to_provider(&state, endpoint, &summary.model, summary.stream, body).await
}

/// The `x-prism-async: true` path for every forwarded endpoint: the request stored as an async
/// job, answered 202 with the job object; its `result` will be the endpoint's own response.
pub(crate) async fn submit_async(
    state: &AppState,
    tenant: &TenantId,
    endpoint: ApiEndpoint,
    body: Bytes,
    key: Option<&str>,
) -> Result<Response, ApiError> {
    let submitted =
        jobs::service::submit_async_job(&state.deps, tenant, endpoint, body, key).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(JobObject::from_job(&submitted.job, &state.deps.prices)),
    )
        .into_response())
}

/// The synchronous path for every forwarded endpoint: the upstream's answer is passed on as it
/// arrives, status included.
pub(crate) async fn relay_to_provider(
    state: &AppState,
    endpoint: ApiEndpoint,
    model: &str,
    stream: bool,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !state.deps.upstream.routes(model) {
        return Err(model_not_found(model).into());
    }
    // Batch lines toward this model yield a slot until the answer starts.
    let _yielded = state.deps.model_gate.interactive(model);
    let relay = state.deps.upstream.relay(endpoint, model, body);
    let relay = match state.limits.sync_deadline.filter(|_| !stream) {
        Some(deadline) => tokio::time::timeout(deadline, relay)
            .await
            .map_err(|_| sync_deadline_passed(deadline))??,
        None => relay.await?,
    };
    let status = StatusCode::from_u16(relay.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let stream = relay.body.map(|chunk| chunk.map_err(std::io::Error::other));
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = status;
    for (name, value) in relay.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "models",
    responses(
        (status = 200, description = "The models the configured providers serve, each under the provider its calls reach.", body = ModelList),
    ),
)]
pub(crate) async fn list_models(State(state): State<AppState>) -> Result<Response, ApiError> {
    let models = prism_core::models::list_models(&state.deps).await?;
    Ok(Json(ModelList::from_models(&models)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "models",
    params(("id" = String, Path, description = "The model's id; it may contain `/`.")),
    responses(
        (status = 200, description = "The model.", body = ModelObject),
        (status = 404, description = "No configured provider serves this model.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_model(
    State(state): State<AppState>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let model = prism_core::models::get_model(&state.deps, &id).await?;
    Ok(Json(ModelObject::from_model(&model)).into_response())
}

fn sync_deadline_passed(deadline: Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream_error",
        format!(
            "The upstream provider did not answer within {} s. Send long requests with \
             'stream: true' or as async jobs ('x-prism-async: true').",
            deadline.as_secs()
        ),
    )
    .code("upstream_timeout")
    .never_retry()
}

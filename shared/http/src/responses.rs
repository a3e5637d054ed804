//! The Responses API routes: `POST /v1/responses` relayed to the provider, stored as an async
//! job (`x-prism-async: true`), or kept as a background response on the job store; `GET /v1/responses/{id}` (JSON, or the recorded stream
//! with `?stream=true&starting_after=N`) and `POST /v1/responses/{id}/cancel`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use prism_core::responses::{response_object, service, summarize_response_request};
use prism_core::{ApiEndpoint, ServiceError, TenantId};

use crate::error::ApiError;
use crate::forward::{relay_to_provider, submit_async};
use crate::openapi::{
    CompletionHeaders, CreateResponseRequest, ErrorResponse, IdParam, ResponseObject,
    ResponseStreamEvent, ResponseStreamParams, UpstreamErrors,
};
use crate::request::{BodyBudget, IdPath, QueryParams, async_mode, idempotency_key};
use crate::routes::{AppState, read_json_body};

#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "responses",
    params(CompletionHeaders),
    request_body(content = CreateResponseRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upstream's response (JSON, or server-sent events with `stream: true`); with `background: true`, Prism's `queued` response, or its recorded events as they arrive.", content(
            (ResponseObject = "application/json"),
            (ResponseStreamEvent = "text/event-stream"),
        )),
        (status = 202, description = "With `x-prism-async: true`: the stored job, to poll at /v1/async/{id}; its `result` is the Responses object. The body may not also set `background: true`.", body = crate::wire::JobObject),
        (status = 502, description = "The upstream failed or answered something that is not a response.", body = ErrorResponse),
        UpstreamErrors,
    ),
)]
pub(crate) async fn create_response(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // Headers first: a refused request is never buffered.
    let is_async = async_mode(&headers)?;
    let key = idempotency_key(&headers)?;
    let held = read_json_body(&state, &budget, &headers, body).await?;
    let body = held.bytes.clone();
    if is_async {
        // A Prism async job like every other endpoint's (polled at /v1/async/{id}); `background`
        // is the Responses API's own way to the same durable job, so the body may not ask both.
        return submit_async(&state, &tenant, ApiEndpoint::Responses, body, key).await;
    }
    let summary = summarize_response_request(&body)?;
    if !summary.background {
        return relay_to_provider(
            &state,
            ApiEndpoint::Responses,
            &summary.model,
            summary.stream,
            body,
        )
        .await;
    }
    let stream = summary.stream;
    let job = service::create_background_response(&state.deps, &tenant, body, summary, key).await?;
    tracing::info!(response_id = %job.id, "background response queued");
    if stream {
        // The client reads the stream as the worker records it; leaving cancels nothing.
        return recorded_stream(&state, &tenant, job.id.as_str(), None).await;
    }
    Ok(Json(response_object(&job)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/responses/{id}",
    tag = "responses",
    params(IdParam, ResponseStreamParams),
    responses(
        (status = 200, description = "The background response, or with `stream=true` its recorded events.", content(
            (ResponseObject = "application/json"),
            (ResponseStreamEvent = "text/event-stream"),
        )),
        (status = 404, description = "No background response with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_response(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
    params: QueryParams,
) -> Result<Response, ApiError> {
    if params.get("stream") == Some("true") {
        let after = match params.get("starting_after") {
            None => None,
            Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
                ServiceError::invalid(
                    "Invalid 'starting_after': expected a non-negative integer.",
                    Some("starting_after"),
                    Some("invalid_type"),
                )
            })?),
        };
        return recorded_stream(&state, &tenant, &id, after).await;
    }
    let job = service::get_response(&state.deps, &tenant, &id).await?;
    Ok(Json(response_object(&job)).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/responses/{id}/cancel",
    tag = "responses",
    params(IdParam),
    responses(
        (status = 200, description = "The response, `cancelled` (again, if it already was).", body = ResponseObject),
        (status = 404, description = "No background response with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The response already finished.", body = ErrorResponse),
    ),
)]
pub(crate) async fn cancel_response(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let job = service::cancel_response(&state.deps, &tenant, &id).await?;
    Ok(Json(response_object(&job)).into_response())
}

async fn recorded_stream(
    state: &AppState,
    tenant: &TenantId,
    id: &str,
    after: Option<u64>,
) -> Result<Response, ApiError> {
    let events = service::recorded_stream(&state.deps, tenant, id, after).await?;
    let body = events.map(|event| Ok::<_, std::convert::Infallible>(event.to_sse()));
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

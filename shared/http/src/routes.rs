//! Routes and handlers. Handlers only translate HTTP to service calls and back; behaviour lives
//! in `prism_core::jobs::service`.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use futures::StreamExt;
use prism_core::chat::summarize_chat_request;
use prism_core::deps::Deps;
use prism_core::ids::new_request_id;
use prism_core::jobs::service::model_not_found;
use prism_core::json_strict::reject_duplicate_keys;
use prism_core::list::ListQuery;
use prism_core::{JobKind, TenantId, batches, jobs};
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::Instrument;

use crate::auth::{KeyCache, require_key};
use crate::error::ApiError;
use crate::files;
use crate::metrics;
use crate::recurring;
use crate::request::{
    BodyBudget, HeldBody, IdPath, QueryParams, async_mode, idempotency_key, read_body,
};
use crate::uploads;
use crate::webhooks;
use crate::wire::{BatchList, BatchObject, JobObject, ListObject};

#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_body_bytes: usize,
    /// A non-streamed synchronous completion whose upstream has not answered by then gets a 504
    /// (with `x-should-retry: false`), before a gateway in front cuts the connection itself.
    pub sync_deadline: Option<Duration>,
    /// Request-body bytes held in memory at once by the whole process; past it a request is
    /// answered 503 with `retry-after` instead of being buffered.
    pub max_inflight_body_bytes: usize,
    /// A body that sends nothing for this long is answered 408 (an idle timeout between chunks).
    pub body_read_timeout: Option<Duration>,
}

/// 192 MiB: 32 bodies of 6 MiB at once. With the process's own ~30 MB and hyper's read buffers,
/// `prism serve` stays under 300 MB however many clients send bodies (bench/hostile.sh).
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 192 * 1024 * 1024;

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_body_bytes: 6 * 1024 * 1024,
            sync_deadline: None,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
            body_read_timeout: None,
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub deps: Deps,
    pub keys: KeyCache,
    pub limits: HttpLimits,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

pub fn router(state: AppState) -> Router {
    let budget = BodyBudget::new(state.limits.max_inflight_body_bytes);
    let body_timeout = state.limits.body_read_timeout;
    let v1 = Router::new()
        .route("/chat/completions", post(chat_completions))
        .route("/async", get(list_async_jobs))
        .route("/async/{id}", get(get_async_job).delete(cancel_async_job))
        .route(
            "/scheduled",
            post(create_scheduled_job).get(list_scheduled_jobs),
        )
        .route(
            "/scheduled/{id}",
            get(get_scheduled_job).delete(cancel_scheduled_job),
        )
        .route("/scheduled/{id}/pause", post(recurring::pause))
        .route("/scheduled/{id}/resume", post(recurring::resume))
        .route("/scheduled/{id}/runs", get(recurring::runs))
        .route("/files", post(files::upload_file).get(files::list_files))
        .route(
            "/files/{id}",
            get(files::get_file).delete(files::delete_file),
        )
        .route("/files/{id}/content", get(files::file_content))
        .route("/uploads", post(uploads::create_upload))
        .route("/uploads/{id}/parts", post(uploads::add_part))
        .route("/uploads/{id}/complete", post(uploads::complete_upload))
        .route("/uploads/{id}/cancel", post(uploads::cancel_upload))
        .route("/batches", post(create_batch).get(list_batches))
        .route("/batches/{id}", get(get_batch))
        .route("/batches/{id}/cancel", post(cancel_batch))
        .route(
            "/webhook_endpoints",
            post(webhooks::create_endpoint).get(webhooks::list_endpoints),
        )
        .route(
            "/webhook_endpoints/{id}",
            get(webhooks::get_endpoint).delete(webhooks::delete_endpoint),
        )
        .route(
            "/webhook_endpoints/{id}/rotate_secret",
            post(webhooks::rotate_secret),
        )
        .route("/webhook_endpoints/{id}/test", post(webhooks::send_test))
        .route(
            "/webhook_endpoints/{id}/deliveries",
            get(webhooks::list_deliveries),
        )
        .route(
            "/webhook_endpoints/{id}/deliveries/{event_id}/redeliver",
            post(webhooks::redeliver),
        )
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .route_layer(middleware::from_fn(metrics::note_route));
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route_layer(middleware::from_fn(metrics::note_route))
        .nest("/v1", v1)
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // Bodies are read by the handlers with the configured cap, answering 413 in our shape.
        .layer(DefaultBodyLimit::disable())
        .layer(Extension(budget));
    let app = match body_timeout {
        Some(timeout) => app.layer(RequestBodyTimeoutLayer::new(timeout)),
        None => app,
    };
    app.layer(middleware::from_fn(metrics::record_request))
        .layer(middleware::from_fn(request_id))
        .with_state(state)
}

/// Gives every response an `x-request-id` and every log line of the request a span carrying it.
async fn request_id(request: Request, next: Next) -> Response {
    let id = new_request_id();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %request.uri().path(),
        tenant = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when storage answers; a load balancer should stop sending traffic otherwise.
async fn ready(State(state): State<AppState>) -> Response {
    // One keyed read of an id that never exists: cheap on every backend, and it fails when the
    // store cannot answer.
    let probe = (
        TenantId::parse("prism-readiness"),
        prism_core::JobId::parse("job_00000000000000000000000000"),
    );
    let result = match probe {
        (Some(tenant), Some(id)) => {
            state
                .deps
                .jobs
                .get(&tenant, &id, state.deps.clock.now())
                .await
        }
        _ => Ok(None),
    };
    match result {
        Ok(_) => Json(json!({"status": "ready"})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}

async fn unknown_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!(
            "Unknown request URL: {} {}.",
            request.method(),
            request.uri().path()
        ),
    )
    .code("unknown_url")
}

async fn method_not_allowed(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!(
            "Method {} is not allowed on {}.",
            request.method(),
            request.uri().path()
        ),
    )
    .code("method_not_allowed")
}

/// The body under the per-request cap and the process budget, refused when a key repeats.
pub(crate) async fn read_json_body(
    state: &AppState,
    budget: &BodyBudget,
    headers: &HeaderMap,
    body: Body,
) -> Result<HeldBody, ApiError> {
    let body = read_body(body, headers, state.limits.max_body_bytes, budget).await?;
    reject_duplicate_keys(&body.bytes)?;
    Ok(body)
}

async fn chat_completions(
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
        let submitted = jobs::service::submit_async_job(&state.deps, &tenant, body, key).await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(JobObject::from_job(&submitted.job)),
        )
            .into_response());
    }
    relay_completion(&state, body).await
}

/// The synchronous path: the upstream's answer is passed on as it arrives, status included.
async fn relay_completion(state: &AppState, body: Bytes) -> Result<Response, ApiError> {
    let summary = summarize_chat_request(&body)?;
    if !state.deps.upstream.routes(&summary.model) {
        return Err(model_not_found(&summary.model).into());
    }
    // Batch lines toward this model yield a slot until the answer starts.
    let _yielded = state.deps.model_gate.interactive(&summary.model);
    let relay = state.deps.upstream.relay(&summary.model, body);
    let relay = match state.limits.sync_deadline.filter(|_| !summary.stream) {
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

async fn get_async_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
) -> Result<Response, ApiError> {
    get_job(state, tenant, JobKind::Async, id).await
}

/// A recurring schedule or a one-time scheduled job: they share the `sched_` ids.
async fn get_scheduled_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
) -> Result<Response, ApiError> {
    if let Some(schedule) =
        prism_core::recurring::service::find_recurring(&state.deps, &tenant, &id.0).await?
    {
        return Ok(recurring::schedule_response(&schedule));
    }
    get_job(state, tenant, JobKind::Scheduled, id).await
}

async fn get_job(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    kind: JobKind,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let job = jobs::service::get_job(&state.deps, &tenant, kind, &id).await?;
    Ok(Json(JobObject::from_job(&job)).into_response())
}

async fn list_async_jobs(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    list_jobs(state, tenant, JobKind::Async, params).await
}

async fn list_scheduled_jobs(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    list_jobs(state, tenant, JobKind::Scheduled, params).await
}

async fn list_jobs(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    kind: JobKind,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(
        params.get("limit"),
        params.get("after"),
        params.get("status"),
    )?;
    let page = jobs::service::list_jobs(&state.deps, &tenant, kind, &query).await?;
    Ok(Json(ListObject::from_page(&page)).into_response())
}

async fn cancel_async_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
) -> Result<Response, ApiError> {
    cancel_job(state, tenant, JobKind::Async, id).await
}

/// Deletes a recurring schedule (`?cancel_running=true` also cancels its unfinished runs) or
/// cancels a one-time scheduled job.
async fn cancel_scheduled_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let cancel_running = recurring::cancel_running(&params)?;
    if prism_core::recurring::service::find_recurring(&state.deps, &tenant, &id.0)
        .await?
        .is_some()
    {
        let schedule = prism_core::recurring::service::delete_recurring(
            &state.deps,
            &tenant,
            &id.0,
            cancel_running,
        )
        .await?;
        return Ok(recurring::schedule_response(&schedule));
    }
    cancel_job(state, tenant, JobKind::Scheduled, id).await
}

async fn cancel_job(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    kind: JobKind,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let job = jobs::service::cancel_job(&state.deps, &tenant, kind, &id).await?;
    Ok(Json(JobObject::from_job(&job)).into_response())
}

/// `POST /v1/scheduled`: 201 with the job; a replayed `Idempotency-Key` answers the same job.
async fn create_scheduled_job(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    let body = read_json_body(&state, &budget, &headers, body).await?;
    if prism_core::recurring::request::scheduled_kind(&body.bytes)?
        == prism_core::recurring::request::ScheduledKind::Recurring
    {
        // Refused rather than ignored: a retried create would make a second schedule.
        if key.is_some() {
            return Err(prism_core::ServiceError::invalid(
                "The Idempotency-Key header is not supported for recurring schedules yet; send the request without it.",
                Some("Idempotency-Key"),
                Some("idempotency_unsupported"),
            )
            .into());
        }
        let schedule =
            prism_core::recurring::service::create_recurring(&state.deps, &tenant, &body.bytes)
                .await?;
        return Ok((
            StatusCode::CREATED,
            Json(recurring::RecurringObject::from_schedule(&schedule)),
        )
            .into_response());
    }
    let submitted =
        jobs::service::submit_scheduled_job(&state.deps, &tenant, &body.bytes, key).await?;
    Ok((
        StatusCode::CREATED,
        Json(JobObject::from_job(&submitted.job)),
    )
        .into_response())
}

async fn create_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json_body(&state, &budget, &headers, body).await?;
    let batch = batches::service::create_batch(&state.deps, &tenant, &body.bytes).await?;
    Ok(Json(BatchObject::from_batch(&batch)).into_response())
}

async fn get_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let batch = batches::service::get_batch(&state.deps, &tenant, &id).await?;
    Ok(Json(BatchObject::from_batch(&batch)).into_response())
}

async fn list_batches(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let page = batches::service::list_batches(
        &state.deps,
        &tenant,
        params.get("limit"),
        params.get("after"),
    )
    .await?;
    Ok(Json(BatchList::from_page(&page)).into_response())
}

async fn cancel_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let batch = batches::service::cancel_batch(&state.deps, &tenant, &id).await?;
    Ok(Json(BatchObject::from_batch(&batch)).into_response())
}

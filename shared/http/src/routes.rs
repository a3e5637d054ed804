//! Routes and handlers. Handlers only translate HTTP to service calls and back; behaviour lives
//! in `prism_core`'s services (jobs, batches, models).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::{Extension, Json, Router};
use prism_core::deps::Deps;
use prism_core::ids::new_request_id;
use prism_core::json_strict::reject_duplicate_keys;
use prism_core::list::ListQuery;
use prism_core::{JobKind, TenantId, jobs};
use serde_json::json;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tracing::Instrument;

use crate::auth::{KeyCache, require_key};
use crate::batches;
use crate::error::ApiError;
use crate::files;
use crate::forward;
use crate::metrics;
use crate::openapi;
use crate::openapi::{
    CancelScheduledParams, CreateScheduledRequest, ErrorResponse, IdParam, JobListParams,
    ScheduledHeaders, ScheduledObject, Status,
};
use crate::recurring;
use crate::request::{BodyBudget, HeldBody, IdPath, QueryParams, idempotency_key, read_body};
use crate::responses;
use crate::uploads;
use crate::webhooks;
use crate::wire::{JobObject, ListObject};

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

/// What the routes and their middleware share, behind one `Arc`: axum clones the state for
/// every middleware layer and the handler of each request, and a clone of [`Deps`] alone is a
/// score of reference counts, which was about 5% of prism's CPU per request (BENCHMARKS.md,
/// issue 12). Its parts read as fields (`state.deps`).
#[derive(Clone)]
pub struct AppState(Arc<StateParts>);

/// The parts of an [`AppState`].
pub struct StateParts {
    pub deps: Deps,
    pub keys: KeyCache,
    pub limits: HttpLimits,
}

impl AppState {
    pub fn new(deps: Deps, keys: KeyCache, limits: HttpLimits) -> Self {
        Self(Arc::new(StateParts { deps, keys, limits }))
    }
}

impl std::ops::Deref for AppState {
    type Target = StateParts;

    fn deref(&self) -> &StateParts {
        &self.0
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// An HTTP method a route answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    Post,
    Delete,
}

impl Verb {
    fn filter(self) -> MethodFilter {
        match self {
            Verb::Get => MethodFilter::GET,
            Verb::Post => MethodFilter::POST,
            Verb::Delete => MethodFilter::DELETE,
        }
    }
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Public,
    /// Behind `require_key`: the caller's tenant comes from its bearer key.
    Keyed,
}

/// One route: what builds the router, and what the OpenAPI document is checked against.
pub struct Route {
    pub verb: Verb,
    /// axum's syntax, which is OpenAPI's: `/v1/files/{id}`.
    pub path: &'static str,
    pub access: Access,
    handler: MethodRouter<AppState>,
}

fn route<H, T>(verb: Verb, path: &'static str, access: Access, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    Route {
        verb,
        path,
        access,
        handler: on(verb.filter(), handler),
    }
}

/// Every route Prism answers. A route added here needs `#[utoipa::path]` on its handler and an
/// entry in `openapi::ApiDoc`; the `openapi` tests fail until it has both.
pub fn route_table() -> Vec<Route> {
    use Access::{Keyed, Public};
    use Verb::{Delete, Get, Post};
    vec![
        route(Get, "/health", Public, health),
        route(Get, "/ready", Public, ready),
        route(Get, "/openapi.json", Public, openapi::serve_document),
        route(
            Post,
            "/v1/chat/completions",
            Keyed,
            forward::chat_completions,
        ),
        route(Post, "/v1/completions", Keyed, forward::completions),
        route(Post, "/v1/embeddings", Keyed, forward::embeddings),
        route(Post, "/v1/moderations", Keyed, forward::moderations),
        route(Get, "/v1/models", Keyed, forward::list_models),
        route(Get, "/v1/models/{*id}", Keyed, forward::get_model),
        route(Post, "/v1/responses", Keyed, responses::create_response),
        route(Get, "/v1/responses/{id}", Keyed, responses::get_response),
        route(
            Post,
            "/v1/responses/{id}/cancel",
            Keyed,
            responses::cancel_response,
        ),
        route(Get, "/v1/async", Keyed, list_async_jobs),
        route(Get, "/v1/async/{id}", Keyed, get_async_job),
        route(Delete, "/v1/async/{id}", Keyed, cancel_async_job),
        route(Post, "/v1/scheduled", Keyed, create_scheduled_job),
        route(Get, "/v1/scheduled", Keyed, recurring::list),
        route(Get, "/v1/scheduled/{id}", Keyed, get_scheduled_job),
        route(Delete, "/v1/scheduled/{id}", Keyed, cancel_scheduled_job),
        route(Post, "/v1/scheduled/{id}/pause", Keyed, recurring::pause),
        route(Post, "/v1/scheduled/{id}/resume", Keyed, recurring::resume),
        route(Get, "/v1/scheduled/{id}/runs", Keyed, recurring::runs),
        route(Post, "/v1/files", Keyed, files::upload_file),
        route(Get, "/v1/files", Keyed, files::list_files),
        route(Get, "/v1/files/{id}", Keyed, files::get_file),
        route(Delete, "/v1/files/{id}", Keyed, files::delete_file),
        route(Get, "/v1/files/{id}/content", Keyed, files::file_content),
        route(Post, "/v1/uploads", Keyed, uploads::create_upload),
        route(Post, "/v1/uploads/{id}/parts", Keyed, uploads::add_part),
        route(
            Post,
            "/v1/uploads/{id}/complete",
            Keyed,
            uploads::complete_upload,
        ),
        route(
            Post,
            "/v1/uploads/{id}/cancel",
            Keyed,
            uploads::cancel_upload,
        ),
        route(Post, "/v1/batches", Keyed, batches::create_batch),
        route(Get, "/v1/batches", Keyed, batches::list_batches),
        route(Get, "/v1/batches/{id}", Keyed, batches::get_batch),
        route(
            Post,
            "/v1/batches/{id}/cancel",
            Keyed,
            batches::cancel_batch,
        ),
        route(Get, "/v1/usage", Keyed, crate::usage::totals),
        route(
            Post,
            "/v1/webhook_endpoints",
            Keyed,
            webhooks::create_endpoint,
        ),
        route(
            Get,
            "/v1/webhook_endpoints",
            Keyed,
            webhooks::list_endpoints,
        ),
        route(
            Get,
            "/v1/webhook_endpoints/{id}",
            Keyed,
            webhooks::get_endpoint,
        ),
        route(
            Delete,
            "/v1/webhook_endpoints/{id}",
            Keyed,
            webhooks::delete_endpoint,
        ),
        route(
            Post,
            "/v1/webhook_endpoints/{id}/rotate_secret",
            Keyed,
            webhooks::rotate_secret,
        ),
        route(
            Post,
            "/v1/webhook_endpoints/{id}/test",
            Keyed,
            webhooks::send_test,
        ),
        route(
            Get,
            "/v1/webhook_endpoints/{id}/deliveries",
            Keyed,
            webhooks::list_deliveries,
        ),
        route(
            Post,
            "/v1/webhook_endpoints/{id}/deliveries/{event_id}/redeliver",
            Keyed,
            webhooks::redeliver,
        ),
    ]
}

pub fn router(state: AppState) -> Router {
    let budget = BodyBudget::new(state.limits.max_inflight_body_bytes);
    let body_timeout = state.limits.body_read_timeout;
    let (mut public, mut keyed) = (Router::new(), Router::new());
    for route in route_table() {
        match route.access {
            Access::Public => public = public.route(route.path, route.handler),
            Access::Keyed => keyed = keyed.route(route.path, route.handler),
        }
    }
    let keyed = keyed
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key))
        .route_layer(middleware::from_fn(metrics::note_route));
    let public = public.route_layer(middleware::from_fn(metrics::note_route));
    let app = public
        .merge(keyed)
        // The console is a page, not an API route: outside the route table and its document.
        .merge(crate::console::routes())
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

#[utoipa::path(
    get,
    path = "/health",
    tag = "service",
    responses(
        (status = 200, description = "The process is up.", body = Status),
    ),
)]
pub(crate) async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when storage answers; a load balancer should stop sending traffic otherwise.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "service",
    responses(
        (status = 200, description = "Storage answers.", body = Status),
        (status = 503, description = "Storage does not answer.", body = Status),
    ),
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
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

#[utoipa::path(
    get,
    path = "/v1/async/{id}",
    tag = "async",
    params(IdParam),
    responses(
        (status = 200, description = "The job.", body = crate::wire::JobObject),
        (status = 404, description = "No async job with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_async_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
) -> Result<Response, ApiError> {
    get_job(state, tenant, JobKind::Async, id).await
}

/// A recurring schedule or a one-time scheduled job: they share the `sched_` ids.
#[utoipa::path(
    get,
    path = "/v1/scheduled/{id}",
    tag = "scheduled",
    params(IdParam),
    responses(
        (status = 200, description = "The one-time job or recurring schedule.", body = ScheduledObject),
        (status = 404, description = "No scheduled job with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_scheduled_job(
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
    Ok(Json(JobObject::from_job(&job, &state.deps.prices)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/async",
    tag = "async",
    params(JobListParams),
    responses(
        (status = 200, description = "A page of jobs, newest first.", body = crate::wire::ListObject),
    ),
)]
pub(crate) async fn list_async_jobs(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    list_jobs(state, tenant, JobKind::Async, params).await
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
    Ok(Json(ListObject::from_page(&page, &state.deps.prices)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/async/{id}",
    tag = "async",
    params(IdParam),
    responses(
        (status = 200, description = "The cancelled job.", body = crate::wire::JobObject),
        (status = 404, description = "No async job with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The job is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub(crate) async fn cancel_async_job(
    state: State<AppState>,
    tenant: Extension<TenantId>,
    id: IdPath,
) -> Result<Response, ApiError> {
    cancel_job(state, tenant, JobKind::Async, id).await
}

/// Deletes a recurring schedule (`?cancel_running=true` also cancels its unfinished runs) or
/// cancels a one-time scheduled job.
#[utoipa::path(
    delete,
    path = "/v1/scheduled/{id}",
    tag = "scheduled",
    params(IdParam, CancelScheduledParams),
    responses(
        (status = 200, description = "The cancelled job, or the deleted schedule.", body = ScheduledObject),
        (status = 404, description = "No scheduled job with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The job or schedule is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub(crate) async fn cancel_scheduled_job(
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
    Ok(Json(JobObject::from_job(&job, &state.deps.prices)).into_response())
}

/// `POST /v1/scheduled`: 201 with the job; a replayed `Idempotency-Key` answers the same job.
#[utoipa::path(
    post,
    path = "/v1/scheduled",
    tag = "scheduled",
    params(ScheduledHeaders),
    request_body(content = CreateScheduledRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The stored job or schedule.", body = ScheduledObject),
        (status = 429, description = "Too many active schedules for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn create_scheduled_job(
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
        let created = prism_core::recurring::service::create_recurring(
            &state.deps,
            &tenant,
            &body.bytes,
            key,
        )
        .await?;
        return Ok((
            StatusCode::CREATED,
            Json(recurring::RecurringObject::from_schedule(&created.schedule)),
        )
            .into_response());
    }
    let submitted =
        jobs::service::submit_scheduled_job(&state.deps, &tenant, &body.bytes, key).await?;
    Ok((
        StatusCode::CREATED,
        Json(JobObject::from_job(&submitted.job, &state.deps.prices)),
    )
        .into_response())
}

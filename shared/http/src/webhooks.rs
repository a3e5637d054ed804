//! `/v1/webhook_endpoints` handlers: HTTP in, `prism_core::webhooks::service` calls, the wire
//! objects out. The secret is shown only by create and rotate.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use prism_core::TenantId;
use prism_core::webhooks::{Attempt, Endpoint, WebhookEvent, service};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::openapi::{
    CreateWebhookEndpointRequest, DeliveryListParams, ErrorResponse, IdParam, WebhookDeliveryList,
    WebhookEndpoint, WebhookEndpointDeleted, WebhookEndpointList, WebhookEventObject,
};
use crate::request::{BodyBudget, IdPath, QueryParams};
use crate::routes::{AppState, read_json_body};

fn endpoint_object(endpoint: &Endpoint, secret: bool) -> Value {
    let mut object = json!({
        "id": endpoint.id,
        "object": "webhook_endpoint",
        "url": endpoint.url,
        "events": endpoint.events.iter().map(|k| k.as_str()).collect::<Vec<_>>(),
        "description": endpoint.description,
        "status": endpoint.status.as_str(),
        "created_at": endpoint.created_at.unix_seconds(),
        "disabled_at": endpoint.disabled_at.map(|t| t.unix_seconds()),
        "failing_since": endpoint.failing_since.map(|t| t.unix_seconds()),
    });
    if secret && let (Some(map), Some(current)) = (object.as_object_mut(), endpoint.secrets.first())
    {
        map.insert("secret".into(), json!(current.value));
    }
    object
}

fn event_object(event: &WebhookEvent) -> Value {
    serde_json::from_str(&event.payload()).unwrap_or(Value::Null)
}

fn attempt_object(attempt: &Attempt) -> Value {
    json!({
        "id": attempt.id,
        "object": "webhook_endpoint.delivery",
        "endpoint_id": attempt.endpoint_id,
        "event_id": attempt.event_id,
        "event_type": attempt.event_type.as_str(),
        "attempt": attempt.attempt,
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "succeeded": attempt.succeeded,
        "error": attempt.error,
        "created_at": attempt.created_at.unix_seconds(),
    })
}

fn list(data: Vec<Value>) -> Response {
    Json(json!({
        "object": "list",
        "first_id": data.first().and_then(|v| v.get("id")).cloned(),
        "last_id": data.last().and_then(|v| v.get("id")).cloned(),
        "has_more": false,
        "data": data,
    }))
    .into_response()
}

#[utoipa::path(
    post,
    path = "/v1/webhook_endpoints",
    tag = "webhooks",
    request_body(content = CreateWebhookEndpointRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The endpoint, with its signing secret.", body = WebhookEndpoint),
        (status = 429, description = "Too many endpoints for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn create_endpoint(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json_body(&state, &budget, &headers, body).await?;
    let endpoint = service::create_endpoint(&state.deps, &tenant, &body.bytes).await?;
    Ok((StatusCode::CREATED, Json(endpoint_object(&endpoint, true))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhook_endpoints",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint of this key.", body = WebhookEndpointList),
    ),
)]
pub(crate) async fn list_endpoints(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
) -> Result<Response, ApiError> {
    let endpoints = service::list_endpoints(&state.deps, &tenant).await?;
    Ok(list(
        endpoints
            .iter()
            .map(|e| endpoint_object(e, false))
            .collect(),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/webhook_endpoints/{id}",
    tag = "webhooks",
    params(IdParam),
    responses(
        (status = 200, description = "The endpoint.", body = WebhookEndpoint),
        (status = 404, description = "No webhook endpoint with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_endpoint(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let endpoint = service::get_endpoint(&state.deps, &tenant, &id).await?;
    Ok(Json(endpoint_object(&endpoint, false)).into_response())
}

#[utoipa::path(
    delete,
    path = "/v1/webhook_endpoints/{id}",
    tag = "webhooks",
    params(IdParam),
    responses(
        (status = 200, description = "The endpoint is deleted.", body = WebhookEndpointDeleted),
        (status = 404, description = "No webhook endpoint with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn delete_endpoint(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    service::delete_endpoint(&state.deps, &tenant, &id).await?;
    Ok(
        Json(json!({"id": id, "object": "webhook_endpoint.deleted", "deleted": true}))
            .into_response(),
    )
}

#[utoipa::path(
    post,
    path = "/v1/webhook_endpoints/{id}/rotate_secret",
    tag = "webhooks",
    params(IdParam),
    responses(
        (status = 200, description = "The endpoint with its new secret; the old one signs for a while longer.", body = WebhookEndpoint),
        (status = 404, description = "No webhook endpoint with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn rotate_secret(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let endpoint = service::rotate_secret(&state.deps, &tenant, &id).await?;
    Ok(Json(endpoint_object(&endpoint, true)).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/webhook_endpoints/{id}/test",
    tag = "webhooks",
    params(IdParam),
    responses(
        (status = 202, description = "The test event, queued for delivery.", body = WebhookEventObject),
        (status = 404, description = "No webhook endpoint with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn send_test(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let event = service::send_test(&state.deps, &tenant, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(event_object(&event))).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/webhook_endpoints/{id}/deliveries",
    tag = "webhooks",
    params(IdParam, DeliveryListParams),
    responses(
        (status = 200, description = "The endpoint's delivery attempts, newest first.", body = WebhookDeliveryList),
        (status = 404, description = "No webhook endpoint with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn list_deliveries(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let attempts = service::list_attempts(&state.deps, &tenant, &id, params.get("limit")).await?;
    Ok(list(attempts.iter().map(attempt_object).collect()))
}

#[utoipa::path(
    post,
    path = "/v1/webhook_endpoints/{id}/deliveries/{event_id}/redeliver",
    tag = "webhooks",
    params(("id" = String, Path, description = "The endpoint's id."), ("event_id" = String, Path, description = "The event's id.")),
    responses(
        (status = 202, description = "The event, queued for delivery again.", body = WebhookEventObject),
        (status = 404, description = "No webhook endpoint or event with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn redeliver(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Path((id, event_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let event = service::redeliver(&state.deps, &tenant, &id, &event_id).await?;
    Ok((StatusCode::ACCEPTED, Json(event_object(&event))).into_response())
}

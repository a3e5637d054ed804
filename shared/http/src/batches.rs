//! The Batch API routes: create, retrieve, list and cancel. Behaviour lives in
//! `prism_core::batches::service`.

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use prism_core::{TenantId, batches};

use crate::error::ApiError;
use crate::openapi::{BatchListParams, CreateBatchRequest, ErrorResponse, IdParam};
use crate::request::{BodyBudget, IdPath, QueryParams};
use crate::routes::{AppState, read_json_body};
use crate::wire::{BatchList, BatchObject};

#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "batches",
    request_body(content = CreateBatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The batch, `validating`.", body = crate::wire::BatchObject),
        (status = 404, description = "No input file with this id for this key.", body = ErrorResponse),
        (status = 429, description = "Too many active batches for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn create_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json_body(&state, &budget, &headers, body).await?;
    let batch = batches::service::create_batch(&state.deps, &tenant, &body.bytes).await?;
    Ok(Json(BatchObject::from_batch(&batch, &state.deps.prices)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "batches",
    params(IdParam),
    responses(
        (status = 200, description = "The batch.", body = crate::wire::BatchObject),
        (status = 404, description = "No batch with this id for this key.", body = ErrorResponse),
    ),
)]
pub(crate) async fn get_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let batch = batches::service::get_batch(&state.deps, &tenant, &id).await?;
    Ok(Json(BatchObject::from_batch(&batch, &state.deps.prices)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "batches",
    params(BatchListParams),
    responses(
        (status = 200, description = "A page of batches, newest first.", body = crate::wire::BatchList),
    ),
)]
pub(crate) async fn list_batches(
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
    Ok(Json(BatchList::from_page(&page, &state.deps.prices)).into_response())
}

#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "batches",
    params(IdParam),
    responses(
        (status = 200, description = "The batch, `cancelling` or `cancelled`.", body = crate::wire::BatchObject),
        (status = 404, description = "No batch with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The batch is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub(crate) async fn cancel_batch(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let batch = batches::service::cancel_batch(&state.deps, &tenant, &id).await?;
    Ok(Json(BatchObject::from_batch(&batch, &state.deps.prices)).into_response())
}

//! The Uploads API routes: create, a part (multipart `data`, streamed to the blob store as it
//! arrives), complete and cancel. Behaviour lives in `prism_core::uploads::service`.

use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{StreamExt, TryStreamExt};
use prism_core::files::UploadError;
use prism_core::uploads::service;
use prism_core::{ServiceError, TenantId};

use crate::error::ApiError;
use crate::files::{MULTIPART_OVERHEAD, guard_part_heads};
use crate::openapi::{
    CompleteUploadRequest, CreateUploadRequest, ErrorResponse, IdParam, UploadPartForm,
};
use crate::request::{BodyBudget, IdPath};
use crate::routes::{AppState, read_json_body};
use crate::wire::{UploadObject, UploadPartObject};

fn invalid_data(message: String) -> ApiError {
    ServiceError::invalid(message, Some("data"), Some("invalid_request")).into()
}

/// `POST /v1/uploads`.
#[utoipa::path(
    post,
    path = "/v1/uploads",
    tag = "uploads",
    request_body(content = CreateUploadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upload, `pending`.", body = crate::wire::UploadObject),
    ),
)]
pub async fn create_upload(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json_body(&state, &budget, &headers, body).await?;
    let upload = service::create_upload(&state.deps, &tenant, &body.bytes).await?;
    Ok(Json(UploadObject::new(&upload, None, state.deps.clock.now())).into_response())
}

/// `POST /v1/uploads/{id}/parts`: one `data` part; other fields are read past.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/parts",
    tag = "uploads",
    params(IdParam),
    request_body(content = UploadPartForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The stored part.", body = crate::wire::UploadPartObject),
        (status = 404, description = "No upload with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The upload is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn add_part(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let deps = &state.deps;
    let cap = deps.file_policy.max_part_bytes + MULTIPART_OVERHEAD;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > cap) {
        return Err(service::request_part_too_large(deps).into());
    }
    let body_failure = Arc::new(OnceLock::new());
    let request = guard_part_heads(request, &headers, Arc::clone(&body_failure), cap);
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            invalid_data(format!(
                "Expected a multipart/form-data body with a 'data' part: {e}"
            ))
        })?;
    let mut stored = None;
    let outcome: Result<(), ApiError> = async {
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| invalid_data(format!("The multipart body could not be read: {e}")))?
        {
            if field.name() != Some("data") {
                let mut field = field;
                while field.chunk().await.ok().flatten().is_some() {}
                continue;
            }
            if stored.is_some() {
                return Err(invalid_data("Send exactly one 'data' part.".into()));
            }
            let body = field
                .map_err(|e| UploadError::Interrupted(e.to_string()))
                .boxed();
            stored = Some(service::add_part(deps, &tenant, &id, body).await?);
        }
        Ok(())
    }
    .await;
    if let Err(error) = outcome {
        // Read what the client still sends (up to the cap), so it gets this answer rather than
        // a reset connection.
        let mut drained = 0u64;
        while let Ok(Some(mut field)) = multipart.next_field().await {
            while let Ok(Some(chunk)) = field.chunk().await {
                drained += chunk.len() as u64;
                if drained > cap {
                    break;
                }
            }
            if drained > cap {
                break;
            }
        }
        return Err(body_failure.get().cloned().unwrap_or(error));
    }
    match stored {
        Some(part) => Ok(Json(UploadPartObject::new(&part)).into_response()),
        None => Err(ServiceError::invalid(
            "Missing required parameter: 'data'.",
            Some("data"),
            Some("missing_required_parameter"),
        )
        .into()),
    }
}

/// `POST /v1/uploads/{id}/complete`.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/complete",
    tag = "uploads",
    params(IdParam),
    request_body(content = CompleteUploadRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The upload, `completed`, with its file.", body = crate::wire::UploadObject),
        (status = 404, description = "No upload with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The upload is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn complete_upload(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    Extension(budget): Extension<BodyBudget>,
    IdPath(id): IdPath,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_json_body(&state, &budget, &headers, body).await?;
    let (upload, file) = service::complete_upload(&state.deps, &tenant, &id, &body.bytes).await?;
    Ok(Json(UploadObject::new(
        &upload,
        Some(&file),
        state.deps.clock.now(),
    ))
    .into_response())
}

/// `POST /v1/uploads/{id}/cancel`; a body, if any, is ignored.
#[utoipa::path(
    post,
    path = "/v1/uploads/{id}/cancel",
    tag = "uploads",
    params(IdParam),
    responses(
        (status = 200, description = "The upload, `cancelled`.", body = crate::wire::UploadObject),
        (status = 404, description = "No upload with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The upload is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn cancel_upload(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let upload = service::cancel_upload(&state.deps, &tenant, &id).await?;
    let file = service::upload_file(&state.deps, &upload).await?;
    Ok(Json(UploadObject::new(
        &upload,
        file.as_ref(),
        state.deps.clock.now(),
    ))
    .into_response())
}

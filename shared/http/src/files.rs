//! The Files API routes: a multipart upload streamed to the blob store as it arrives, listing,
//! metadata, content (streamed, or a redirect where the store serves it directly) and delete.

use std::time::Duration;

use axum::body::Body;
use std::sync::{Arc, OnceLock};

use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::{StreamExt, TryStreamExt};
use prism_core::files::service::{
    self, FileContent, PendingUpload, discard_upload, upload_expiry, upload_filename,
    upload_purpose, upload_too_large,
};
use prism_core::files::{FileListQuery, FilePurpose, UploadError};
use prism_core::{ServiceError, TenantId};

use crate::error::ApiError;
use crate::multipart_guard::{HeadGuard, MAX_PART_HEAD_BYTES};
use crate::openapi::{ErrorResponse, FileListParams, FileUploadForm, IdParam};
use crate::request::{IdPath, QueryParams, is_body_timeout, redirect_as_json};
use crate::routes::AppState;
use crate::wire::{FileDeleted, FileList, FileObject};

/// Room for the multipart envelope around the file itself.
pub(crate) const MULTIPART_OVERHEAD: u64 = 64 * 1024;
/// Text fields (`purpose`, `expires_after[...]`) are short; anything longer is refused.
const MAX_TEXT_FIELD: usize = 256;

fn invalid(message: &str, param: &str) -> ApiError {
    ServiceError::invalid(message, Some(param), Some("invalid_request")).into()
}

async fn text_field(field: &mut Field<'_>, name: &str) -> Result<String, ApiError> {
    let mut text = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| invalid(&format!("Could not read '{name}': {e}"), name))?
    {
        text.extend_from_slice(&chunk);
        if text.len() > MAX_TEXT_FIELD {
            return Err(invalid(&format!("'{name}' is too long."), name));
        }
    }
    String::from_utf8(text).map_err(|_| invalid(&format!("'{name}' is not UTF-8."), name))
}

/// `POST /v1/files`: `file` and `purpose` in either order. A purpose seen first is checked before
/// any byte is stored; one seen after the file removes the stored bytes when it is refused.
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "files",
    request_body(content = FileUploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The stored file.", body = crate::wire::FileObject),
    ),
)]
pub async fn upload_file(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let deps = &state.deps;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > deps.file_policy.max_upload_bytes + MULTIPART_OVERHEAD) {
        return Err(upload_too_large(&deps.file_policy).into());
    }
    let body_failure = Arc::new(OnceLock::new());
    let request = guard_part_heads(
        request,
        &headers,
        Arc::clone(&body_failure),
        deps.file_policy.max_upload_bytes + MULTIPART_OVERHEAD,
    );
    let mut multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|e| {
            invalid(
                &format!("Expected a multipart/form-data body with 'file' and 'purpose': {e}"),
                "file",
            )
        })?;
    let mut purpose: Option<FilePurpose> = None;
    let mut expires_after: Option<Duration> = None;
    let mut stored: Option<(PendingUpload, String)> = None;
    let outcome: Result<(), ApiError> = async {
        while let Some(mut field) = multipart.next_field().await.map_err(|e| {
            invalid(
                &format!("The multipart body could not be read: {e}"),
                "file",
            )
        })? {
            match field.name().unwrap_or_default() {
                "purpose" => {
                    purpose = Some(upload_purpose(
                        text_field(&mut field, "purpose").await?.trim(),
                    )?)
                }
                "expires_after[seconds]" => {
                    expires_after = Some(upload_expiry(
                        &text_field(&mut field, "expires_after[seconds]").await?,
                    )?)
                }
                "expires_after[anchor]" => {
                    if text_field(&mut field, "expires_after[anchor]")
                        .await?
                        .trim()
                        != "created_at"
                    {
                        return Err(invalid(
                            "'expires_after[anchor]' must be 'created_at'.",
                            "expires_after[anchor]",
                        ));
                    }
                }
                "file" if stored.is_some() => {
                    return Err(invalid("Send exactly one 'file' part.", "file"));
                }
                "file" => {
                    // Checked before any byte is stored.
                    let filename = upload_filename(
                        field
                            .file_name()
                            .filter(|n| !n.is_empty())
                            .unwrap_or("file"),
                    )?
                    .to_owned();
                    let body = field
                        .map_err(|e| UploadError::Interrupted(e.to_string()))
                        .boxed();
                    let upload = service::store_upload(deps, &tenant, body).await?;
                    stored = Some((upload, filename));
                }
                // Unknown parts are read past, as OpenAI ignores them.
                _ => while field.chunk().await.ok().flatten().is_some() {},
            }
        }
        Ok(())
    }
    .await;
    // multer and the blob store see only that the body broke; the guard knows why.
    let outcome = outcome.map_err(|error| body_failure.get().cloned().unwrap_or(error));
    let (upload, filename) = match (outcome, stored) {
        (Ok(()), Some(stored)) => stored,
        (Ok(()), None) => return Err(invalid("Missing required parameter: 'file'.", "file")),
        (Err(error), stored) => {
            if let Some((upload, _)) = stored {
                discard_upload(deps, &upload.tenant, &upload.id).await;
            }
            return Err(error);
        }
    };
    let Some(purpose) = purpose else {
        discard_upload(deps, &upload.tenant, &upload.id).await;
        return Err(invalid("Missing required parameter: 'purpose'.", "purpose"));
    };
    let file = service::register_upload(deps, upload, filename, purpose, expires_after).await?;
    Ok(Json(FileObject::from_record(&file)).into_response())
}

/// The body as multer will see it, failed once a part head runs past [`MAX_PART_HEAD_BYTES`]
/// or the body stalls past the body read timeout; `failure` then holds the answer. The rest of the body, up to `drain_limit` bytes, is then read without being
/// kept before the error surfaces: a server that answers while the client still sends makes the
/// kernel reset the connection, and the client would lose the 400. Without a boundary there is
/// nothing to guard: multer refuses the body.
pub(crate) fn guard_part_heads(
    request: Request,
    headers: &HeaderMap,
    failure: Arc<OnceLock<ApiError>>,
    drain_limit: u64,
) -> Request {
    let Some(boundary) = boundary(headers) else {
        return request;
    };
    let (parts, body) = request.into_parts();
    let state = (body.into_data_stream(), HeadGuard::new(&boundary), false);
    let guarded = futures::stream::unfold(state, move |(mut body, mut guard, done)| {
        let failure = Arc::clone(&failure);
        async move {
            if done {
                return None;
            }
            let chunk = match body.next().await? {
                Ok(chunk) => chunk,
                Err(error) => {
                    if is_body_timeout(&error) {
                        let _ = failure.set(ApiError::body_timeout());
                    }
                    return Some((Err(BoxError::from(error)), (body, guard, true)));
                }
            };
            if let Err(too_long) = guard.feed(&chunk) {
                let _ = failure.set(invalid(
                    &format!(
                        "A multipart part header is longer than {MAX_PART_HEAD_BYTES} bytes (is the filename too long?)."
                    ),
                    "file",
                ));
                let mut drained = 0u64;
                while drained <= drain_limit {
                    match body.next().await {
                        Some(Ok(rest)) => drained += rest.len() as u64,
                        Some(Err(_)) | None => break,
                    }
                }
                return Some((Err(BoxError::from(too_long)), (body, guard, true)));
            }
            Some((Ok(chunk), (body, guard, false)))
        }
    });
    Request::from_parts(parts, Body::from_stream(guarded))
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The `boundary` parameter of a `multipart/form-data` content type.
fn boundary(headers: &HeaderMap) -> Option<String> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

#[utoipa::path(
    get,
    path = "/v1/files",
    tag = "files",
    params(FileListParams),
    responses(
        (status = 200, description = "A page of files.", body = crate::wire::FileList),
    ),
)]
pub async fn list_files(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let param = |name: &str| params.get(name);
    let query = FileListQuery::parse(
        param("purpose"),
        param("limit"),
        param("after"),
        param("order"),
    )?;
    let page = service::list_files(&state.deps, &tenant, &query).await?;
    Ok(Json(FileList::from_page(&page)).into_response())
}

#[utoipa::path(
    get,
    path = "/v1/files/{id}",
    tag = "files",
    params(IdParam),
    responses(
        (status = 200, description = "The file.", body = crate::wire::FileObject),
        (status = 404, description = "No file with this id for this key.", body = ErrorResponse),
    ),
)]
pub async fn get_file(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let file = service::get_file(&state.deps, &tenant, &id).await?;
    Ok(Json(FileObject::from_record(&file)).into_response())
}

/// The bytes as stored, whatever `Accept` says (the SDKs send `application/binary`).
#[utoipa::path(
    get,
    path = "/v1/files/{id}/content",
    tag = "files",
    params(IdParam),
    responses(
        (status = 200, description = "The bytes as stored.", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 307, description = "Where the store serves the bytes itself (`Location`)."),
        (status = 404, description = "No file with this id for this key.", body = ErrorResponse),
    ),
)]
pub async fn file_content(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let as_json = redirect_as_json(&headers)?;
    match service::file_content(&state.deps, &tenant, &id).await? {
        FileContent::Redirect { url } if as_json => Ok(Json(
            serde_json::json!({"object": "file.content_url", "id": id, "url": url}),
        )
        .into_response()),
        FileContent::Redirect { url } => {
            let location = HeaderValue::from_str(&url).map_err(|_| ApiError::internal())?;
            Ok((
                StatusCode::TEMPORARY_REDIRECT,
                [(header::LOCATION, location)],
            )
                .into_response())
        }
        FileContent::Stream { file, body } => {
            let body = Body::from_stream(body.map_err(std::io::Error::other));
            let mut response = Response::new(body);
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(file.bytes));
            Ok(response)
        }
    }
}

#[utoipa::path(
    delete,
    path = "/v1/files/{id}",
    tag = "files",
    params(IdParam),
    responses(
        (status = 200, description = "The file is deleted.", body = crate::wire::FileDeleted),
        (status = 404, description = "No file with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The file is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn delete_file(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let id = service::delete_file(&state.deps, &tenant, &id).await?;
    Ok(Json(FileDeleted::new(&id)).into_response())
}

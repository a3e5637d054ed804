//! The Uploads API services behind the HTTP routes: create, store a part as it streams in,
//! complete (join the parts in order into one file, checked like a `POST /v1/files` upload),
//! cancel, and the reconciler's cleanup. Plain functions over [`Deps`], the same on every
//! backend.

use std::sync::{Arc, OnceLock};

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};

use crate::deps::Deps;
use crate::error::{ServiceError, StoreError};
use crate::files::service::suggested_part_size;
use crate::files::{BATCH_INPUT_TTL, FileRecord, UploadError, UploadStream, Utf8Check};
use crate::ids::{TenantId, UploadId};
use crate::uploads::decisions::{self, CancelStep, CompletionStep};
use crate::uploads::{
    CompleteUploadRequest, CompletionClaim, CreateUploadRequest, Upload, UploadPart, UploadStatus,
};

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        what: "upload",
        id: id.to_owned(),
    }
}

fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ServiceError> {
    serde_json::from_slice(body).map_err(|e| {
        ServiceError::invalid(
            format!("The body is not a valid JSON object: {e}"),
            None,
            Some("invalid_json"),
        )
    })
}

/// `POST /v1/uploads`.
#[tracing::instrument(skip_all, fields(tenant = %tenant, upload_id))]
pub async fn create_upload(
    deps: &Deps,
    tenant: &TenantId,
    body: &[u8],
) -> Result<Upload, ServiceError> {
    let request: CreateUploadRequest = json_body(body)?;
    let new = decisions::check_create(request, deps.file_policy.max_file_bytes)?;
    let now = deps.clock.now();
    let upload = Upload {
        id: deps.ids.upload_id(now),
        tenant: tenant.clone(),
        filename: new.filename,
        purpose: new.purpose,
        bytes: new.bytes,
        mime_type: new.mime_type,
        created_at: now,
        expires_at: now.plus(deps.file_policy.upload_ttl),
        file_expires_after: new.file_expires_after,
        status: UploadStatus::Pending,
        completion: None,
    };
    tracing::Span::current().record("upload_id", upload.id.as_str());
    deps.uploads.create(&upload).await?;
    Ok(upload)
}

/// The tenant's upload; another tenant's is a 404 like an unknown one.
pub async fn get_upload(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Upload, ServiceError> {
    let upload_id = UploadId::parse(id).ok_or_else(|| not_found(id))?;
    deps.uploads
        .get(tenant, &upload_id)
        .await?
        .ok_or_else(|| not_found(id))
}

/// The file a completed upload made, for its answer.
pub async fn upload_file(deps: &Deps, upload: &Upload) -> Result<Option<FileRecord>, ServiceError> {
    match upload.file_id() {
        Some(id) => Ok(deps.files.get(&upload.tenant, id, deps.clock.now()).await?),
        None => Ok(None),
    }
}

/// The 413 of a part over what one request may carry here.
fn part_too_large(deps: &Deps, limit: u64, upload: &Upload) -> ServiceError {
    if limit >= upload.bytes && limit < deps.file_policy.max_part_bytes {
        return ServiceError::invalid(
            format!(
                "The part is larger than the whole upload ({} bytes).",
                upload.bytes
            ),
            Some("data"),
            Some("part_too_large"),
        );
    }
    ServiceError::TooLarge {
        message: format!(
            "The part is larger than {limit} bytes, the most one request carries here. Send \
             smaller parts: client.uploads.upload_file_chunked(..., part_size={}).",
            suggested_part_size(&deps.file_policy)
        ),
    }
}

/// The 413 of a part request whose declared length is over what one request carries here.
pub fn request_part_too_large(deps: &Deps) -> ServiceError {
    ServiceError::TooLarge {
        message: format!(
            "The part is larger than {} bytes, the most one request carries here. Send smaller \
             parts: client.uploads.upload_file_chunked(..., part_size={}).",
            deps.file_policy.max_part_bytes,
            suggested_part_size(&deps.file_policy)
        ),
    }
}

/// `POST /v1/uploads/{id}/parts`: the part's bytes stream into the blob store (never held
/// whole), then its record is written if the upload still takes parts.
#[tracing::instrument(skip_all, fields(tenant = %tenant, upload_id = id, part_id))]
pub async fn add_part(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    body: UploadStream<'_>,
) -> Result<UploadPart, ServiceError> {
    let upload = get_upload(deps, tenant, id).await?;
    decisions::part_refusal(&upload, deps.clock.now())?;
    let limit = decisions::part_byte_limit(&upload, deps.file_policy.max_part_bytes);
    let part_id = deps.ids.part_id(deps.clock.now());
    tracing::Span::current().record("part_id", part_id.as_str());
    let mut part = UploadPart {
        id: part_id,
        upload_id: upload.id.clone(),
        tenant: tenant.clone(),
        bytes: 0,
        created_at: deps.clock.now(),
    };
    let key = part.blob_key();
    let mut seen = 0u64;
    let capped = body
        .map(move |chunk| {
            let chunk = chunk?;
            seen += chunk.len() as u64;
            if seen > limit {
                return Err(UploadError::TooLarge { limit });
            }
            Ok(chunk)
        })
        .boxed();
    part.bytes = match deps.blobs.put_stream(&key, capped).await {
        Ok(bytes) => bytes,
        Err(UploadError::TooLarge { limit }) => return Err(part_too_large(deps, limit, &upload)),
        Err(UploadError::Store(store)) => return Err(store.into()),
        Err(other) => {
            return Err(ServiceError::invalid(
                format!("The part could not be read: {other}"),
                Some("data"),
                Some("invalid_upload"),
            ));
        }
    };
    if part.bytes == 0 {
        deps.blobs.delete(&key).await?;
        return Err(ServiceError::invalid(
            "The part is empty.",
            Some("data"),
            Some("empty_part"),
        ));
    }
    if deps.uploads.add_part(&part, deps.clock.now()).await? {
        // Which ids were acknowledged, and by which process: a complete that later finds one
        // missing is traced back to the write that answered for it.
        tracing::debug!(part_id = %part.id, bytes = part.bytes, "upload part acknowledged");
        return Ok(part);
    }
    // Cancelled or expired while the bytes streamed in: they are not kept.
    discard(deps, &key).await;
    let current = get_upload(deps, tenant, id).await?;
    decisions::part_refusal(&current, deps.clock.now())?;
    Err(StoreError::Unavailable("the part could not be recorded".into()).into())
}

async fn discard(deps: &Deps, key: &str) {
    if let Err(error) = deps.blobs.delete(key).await {
        tracing::warn!(%error, key, "could not delete bytes nobody will read; cleanup removes them");
    }
}

/// `POST /v1/uploads/{id}/complete`. The file is named and claimed first, its bytes are written
/// whole under that name, and only then does one write make the upload completed and the file
/// visible: a crash leaves no file or one whole file, and a repeat of the same request writes
/// (or answers) that same file.
#[tracing::instrument(skip_all, fields(tenant = %tenant, upload_id = id, file_id))]
pub async fn complete_upload(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    body: &[u8],
) -> Result<(Upload, FileRecord), ServiceError> {
    let request = decisions::check_complete_request(json_body::<CompleteUploadRequest>(body)?)?;
    let upload = get_upload(deps, tenant, id).await?;
    let known = deps.uploads.parts(tenant, &upload.id).await?;
    let (parts, reuse) = match decisions::completion(&upload, &known, &request, deps.clock.now())? {
        CompletionStep::Replay(_) => return answered(deps, upload).await,
        CompletionStep::Begin { parts, file_id } => (parts, file_id),
    };
    let previous = upload.completion.as_ref().map(|c| c.file_id.clone());
    let claim = CompletionClaim {
        file_id: reuse.unwrap_or_else(|| deps.ids.file_id(deps.clock.now())),
        part_ids: request.part_ids.clone(),
        md5: request.md5.clone(),
    };
    tracing::Span::current().record("file_id", claim.file_id.as_str());
    let unchanged = previous.as_ref() == Some(&claim.file_id);
    if !unchanged
        && !deps
            .uploads
            .claim_completion(tenant, &upload.id, &claim, previous.as_ref())
            .await?
    {
        return settled_elsewhere(deps, tenant, id).await;
    }
    if let Some(old) = previous.filter(|old| old != &claim.file_id) {
        // A different earlier complete's bytes (if it got that far) will never be a file.
        discard(deps, &crate::files::file_blob_key(tenant, &old)).await;
    }
    let record = FileRecord {
        id: claim.file_id.clone(),
        tenant: tenant.clone(),
        purpose: upload.purpose,
        filename: upload.filename.clone(),
        bytes: upload.bytes,
        created_at: deps.clock.now(),
        expires_at: Some(
            deps.clock
                .now()
                .plus(upload.file_expires_after.unwrap_or(BATCH_INPUT_TTL)),
        ),
    };
    let key = record.blob_key();
    let md5 = Arc::new(OnceLock::new());
    let joined = joined_parts(deps, &parts, upload.bytes, Arc::clone(&md5));
    match deps.blobs.put_stream(&key, joined).await {
        Ok(written) if written == upload.bytes => {}
        Ok(written) => {
            discard(deps, &key).await;
            return Err(StoreError::Corrupt(format!(
                "the parts held {written} bytes, not the {} recorded",
                upload.bytes
            ))
            .into());
        }
        Err(error) => {
            discard(deps, &key).await;
            return Err(joined_error(error));
        }
    }
    if let (Some(expected), Some(actual)) = (&request.md5, md5.get())
        && expected != actual
    {
        discard(deps, &key).await;
        return Err(decisions::md5_mismatch(expected, actual));
    }
    if !deps.uploads.complete(tenant, &upload.id, &record).await? {
        let current = get_upload(deps, tenant, id).await?;
        if current.file_id() == Some(&record.id) {
            // A concurrent repeat of this same request made it first.
            return answered(deps, current).await;
        }
        discard(deps, &key).await;
        return settled_elsewhere(deps, tenant, id).await;
    }
    for part in &known {
        // Every part of the upload, used or not: nothing else will read them.
        discard(deps, &part.blob_key()).await;
    }
    let mut completed = upload;
    completed.status = UploadStatus::Completed;
    completed.completion = Some(claim);
    Ok((completed, record))
}

/// A completed upload with its file.
async fn answered(deps: &Deps, upload: Upload) -> Result<(Upload, FileRecord), ServiceError> {
    match upload_file(deps, &upload).await? {
        Some(file) => Ok((upload, file)),
        None => Err(ServiceError::StateConflict {
            message: format!(
                "Upload '{}' is completed, but its file was deleted or has expired.",
                upload.id
            ),
            param: None,
            code: "upload_file_gone".into(),
        }),
    }
}

/// The answer when another call changed the upload first (a cancel, an expiry, another
/// complete): what the upload's state now says.
async fn settled_elsewhere(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<(Upload, FileRecord), ServiceError> {
    let current = get_upload(deps, tenant, id).await?;
    match decisions::part_refusal(&current, deps.clock.now()) {
        Err(refusal) => Err(refusal),
        Ok(()) => Err(ServiceError::StateConflict {
            message: format!(
                "Upload '{id}' is being completed by another request with other parts."
            ),
            param: Some("part_ids".into()),
            code: "upload_completing".into(),
        }),
    }
}

/// The parts' bytes in order, one part's stream at a time, checked as a `POST /v1/files` upload
/// is (size, UTF-8) and hashed for the md5, which lands in `md5` once the stream ends.
fn joined_parts(
    deps: &Deps,
    parts: &[UploadPart],
    declared: u64,
    md5: Arc<OnceLock<String>>,
) -> UploadStream<'static> {
    let blobs = Arc::clone(&deps.blobs);
    let keys: Vec<String> = parts.iter().map(UploadPart::blob_key).collect();
    let bytes = futures::stream::iter(keys)
        .then(move |key| {
            let blobs = Arc::clone(&blobs);
            async move { blobs.get(&key).await }
        })
        .try_flatten()
        .map_err(UploadError::Store);
    let state = Joining {
        bytes: bytes.boxed(),
        utf8: Utf8Check::default(),
        hasher: Md5::new(),
        seen: 0,
        done: false,
    };
    futures::stream::unfold(state, move |mut state| {
        let md5 = Arc::clone(&md5);
        async move {
            if state.done {
                return None;
            }
            let next = match state.bytes.next().await {
                Some(Ok(chunk)) => {
                    state.seen += chunk.len() as u64;
                    if state.seen > declared {
                        Some(Err(UploadError::TooLarge { limit: declared }))
                    } else {
                        match state.utf8.feed(&chunk) {
                            Ok(()) => {
                                state.hasher.update(&chunk);
                                Some(Ok(chunk))
                            }
                            Err(e) => Some(Err(e)),
                        }
                    }
                }
                Some(Err(e)) => Some(Err(e)),
                None => match state.utf8.finish() {
                    Ok(()) => {
                        let hasher = std::mem::replace(&mut state.hasher, Md5::new());
                        let _ = md5.set(hex::encode(hasher.finalize()));
                        None
                    }
                    Err(e) => Some(Err(e)),
                },
            };
            state.done = !matches!(next, Some(Ok(_)));
            next.map(|item| (item, state))
        }
    })
    .boxed()
}

struct Joining {
    bytes: futures::stream::BoxStream<'static, Result<bytes::Bytes, UploadError>>,
    utf8: Utf8Check,
    hasher: Md5,
    seen: u64,
    done: bool,
}

fn joined_error(error: UploadError) -> ServiceError {
    match error {
        UploadError::NotUtf8 => ServiceError::invalid(
            "The joined parts are not valid UTF-8 text; batch input must be JSONL.",
            Some("part_ids"),
            Some("invalid_file_format"),
        ),
        UploadError::TooLarge { limit } => StoreError::Corrupt(format!(
            "the parts hold more than the {limit} bytes recorded"
        ))
        .into(),
        UploadError::Interrupted(detail) => StoreError::Unavailable(detail).into(),
        UploadError::Store(store) => store.into(),
    }
}

/// `POST /v1/uploads/{id}/cancel`: a cancelled upload takes nothing more; its parts go.
#[tracing::instrument(skip_all, fields(tenant = %tenant, upload_id = id))]
pub async fn cancel_upload(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Upload, ServiceError> {
    let upload = get_upload(deps, tenant, id).await?;
    match decisions::cancellation(&upload, deps.clock.now())? {
        CancelStep::AlreadyCancelled => return Ok(upload),
        CancelStep::Cancel => {}
    }
    if !deps
        .uploads
        .cancel(tenant, &upload.id, deps.clock.now())
        .await?
    {
        // Completed, cancelled or expired meanwhile: answer as the upload now stands.
        let current = get_upload(deps, tenant, id).await?;
        decisions::cancellation(&current, deps.clock.now())?;
        return Ok(current);
    }
    for part in deps.uploads.parts(tenant, &upload.id).await? {
        discard(deps, &part.blob_key()).await;
    }
    let mut cancelled = upload;
    cancelled.status = UploadStatus::Cancelled;
    Ok(cancelled)
}

/// The reconciler's pass over uploads: those past their retention go, with their parts' bytes.
pub async fn purge_expired_uploads(deps: &Deps, limit: usize) -> Result<usize, StoreError> {
    let before = decisions::purge_before(deps.clock.now());
    let purged = deps.uploads.purge_expired(before, limit).await?;
    for (_, parts) in &purged {
        for part in parts {
            discard(deps, &part.blob_key()).await;
        }
    }
    Ok(purged.len())
}

//! The Files API services behind the HTTP routes: store an upload as it streams in, register it,
//! read, list, download and delete files. Plain functions over [`Deps`], the same on every backend.

use std::time::Duration;

use futures::StreamExt;

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::files::{
    BATCH_INPUT_TTL, EXPIRES_AFTER_SECONDS, FileListQuery, FilePurpose, FileRecord, UploadError,
    UploadStream, Utf8Check, file_blob_key,
};
use crate::ids::{FileId, TenantId};
use crate::list::Page;
use crate::ports::BlobStream;

/// Knobs of the Files API, read once from configuration and the backend.
#[derive(Debug, Clone)]
pub struct FilePolicy {
    /// Uploads above this many bytes are refused with 413.
    pub max_upload_bytes: u64,
    /// Said in that 413, when the cap comes from the platform rather than from configuration.
    pub upload_limit_reason: Option<String>,
    /// The largest file the Uploads API assembles (`files.max_upload_bytes`); above
    /// `max_upload_bytes` only that API can bring a file in.
    pub max_file_bytes: u64,
    /// The largest part one request carries (AWS: Lambda's payload limit).
    pub max_part_bytes: u64,
    /// How long an upload takes parts and its complete.
    pub upload_ttl: Duration,
    /// Downloads above this many bytes answer with a redirect to a pre-signed URL, where the
    /// blob store has them (AWS: past what a Lambda response carries well).
    pub redirect_downloads_above: Option<u64>,
    /// How long such a URL stays valid.
    pub presigned_url_ttl: Duration,
}

impl Default for FilePolicy {
    fn default() -> Self {
        Self {
            max_upload_bytes: 200 * 1024 * 1024,
            upload_limit_reason: None,
            max_file_bytes: 200 * 1024 * 1024,
            max_part_bytes: crate::uploads::MAX_PART_BYTES,
            upload_ttl: crate::uploads::UPLOAD_TTL,
            redirect_downloads_above: None,
            presigned_url_ttl: Duration::from_secs(15 * 60),
        }
    }
}

/// Bytes stored for an upload whose record is not written yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    pub id: FileId,
    pub tenant: TenantId,
    pub bytes: u64,
}

/// Only batch input can be uploaded today.
pub fn upload_purpose(purpose: &str) -> Result<FilePurpose, ServiceError> {
    match FilePurpose::parse(purpose) {
        Some(FilePurpose::Batch) => Ok(FilePurpose::Batch),
        _ => Err(ServiceError::invalid(
            format!("Invalid 'purpose': '{purpose}'. Prism accepts uploads with purpose 'batch'."),
            Some("purpose"),
            Some("invalid_value"),
        )),
    }
}

/// Longest upload filename, in bytes: what common filesystems allow for one name. Every listing
/// repeats each filename, so without a cap a few huge names make every `GET /v1/files` huge.
pub const MAX_FILENAME_BYTES: usize = 255;

/// The `file` part's filename, refused past [`MAX_FILENAME_BYTES`].
pub fn upload_filename(name: &str) -> Result<&str, ServiceError> {
    if name.len() > MAX_FILENAME_BYTES {
        return Err(ServiceError::invalid(
            format!(
                "The filename of 'file' is {} bytes long; at most {MAX_FILENAME_BYTES} bytes are allowed.",
                name.len()
            ),
            Some("file"),
            Some("filename_too_long"),
        ));
    }
    Ok(name)
}

/// `expires_after[seconds]`, as OpenAI bounds it.
pub fn upload_expiry(seconds: &str) -> Result<Duration, ServiceError> {
    match seconds.trim().parse::<u64>() {
        Ok(s) if EXPIRES_AFTER_SECONDS.contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(ServiceError::invalid(
            format!(
                "Invalid 'expires_after[seconds]': expected an integer from {} to {}.",
                EXPIRES_AFTER_SECONDS.start(),
                EXPIRES_AFTER_SECONDS.end()
            ),
            Some("expires_after[seconds]"),
            Some("invalid_value"),
        )),
    }
}

/// Streams an upload into the blob store, checking size and UTF-8 on the way; an empty file is
/// refused after the fact (and its blob removed).
#[tracing::instrument(skip_all, fields(tenant = %tenant, file_id))]
pub async fn store_upload(
    deps: &Deps,
    tenant: &TenantId,
    body: UploadStream<'_>,
) -> Result<PendingUpload, ServiceError> {
    let id = deps.ids.file_id(deps.clock.now());
    tracing::Span::current().record("file_id", id.as_str());
    let key = file_blob_key(tenant, &id);
    let limit = deps.file_policy.max_upload_bytes;
    let checked = futures::stream::unfold(
        (body, Utf8Check::default(), 0u64, false),
        move |(mut body, mut utf8, mut seen, done)| async move {
            if done {
                return None;
            }
            let failed =
                |e: UploadError, body, utf8, seen| Some((Err(e), (body, utf8, seen, true)));
            match body.next().await {
                Some(Ok(chunk)) => {
                    seen += chunk.len() as u64;
                    if seen > limit {
                        return failed(UploadError::TooLarge { limit }, body, utf8, seen);
                    }
                    match utf8.feed(&chunk) {
                        Ok(()) => Some((Ok(chunk), (body, utf8, seen, false))),
                        Err(e) => failed(e, body, utf8, seen),
                    }
                }
                Some(Err(e)) => failed(e, body, utf8, seen),
                // A character split off at the very end is only known once the stream ends.
                None => match utf8.finish() {
                    Ok(()) => None,
                    Err(e) => failed(e, body, utf8, seen),
                },
            }
        },
    )
    .boxed();
    let bytes = deps
        .blobs
        .put_stream(&key, checked)
        .await
        .map_err(|e| upload_error(deps, e))?;
    if bytes == 0 {
        deps.blobs.delete(&key).await?;
        return Err(ServiceError::invalid(
            "The file is empty.",
            Some("file"),
            Some("empty_file"),
        ));
    }
    Ok(PendingUpload {
        id,
        tenant: tenant.clone(),
        bytes,
    })
}

/// The 413 for an upload over the cap, saying why the cap is what it is, and, where the Uploads
/// API takes larger files than one request, how to send them.
pub fn upload_too_large(policy: &FilePolicy) -> ServiceError {
    let limit = policy.max_upload_bytes;
    let mut message = match &policy.upload_limit_reason {
        Some(reason) => format!("The file is larger than {limit} bytes: {reason}"),
        None => format!("The file is larger than the limit of {limit} bytes."),
    };
    if policy.max_file_bytes > limit {
        message.push(' ');
        message.push_str(&uploads_api_hint(policy));
    }
    ServiceError::TooLarge { message }
}

/// Where one request cannot carry a whole file: the Uploads API, the SDK call that drives it,
/// and the part size that fits this backend's requests.
pub fn uploads_api_hint(policy: &FilePolicy) -> String {
    let part = suggested_part_size(policy);
    format!(
        "Send files of up to {} bytes with the Uploads API (POST /v1/uploads, then parts, then \
         complete): in Python, client.uploads.upload_file_chunked(file=path, \
         mime_type=\"application/jsonl\", purpose=\"batch\", part_size={part}).",
        policy.max_file_bytes
    )
}

/// A part size that fits one request with room for the multipart envelope and, on Lambda, the
/// base64 encoding of the body (4/3): two thirds of the cap, in whole MiB (4 MiB on AWS).
pub fn suggested_part_size(policy: &FilePolicy) -> u64 {
    const MIB: u64 = 1024 * 1024;
    let cap = policy.max_part_bytes.min(crate::uploads::MAX_PART_BYTES);
    if cap >= crate::uploads::MAX_PART_BYTES {
        return crate::uploads::MAX_PART_BYTES;
    }
    ((cap * 2 / 3) / MIB).max(1) * MIB
}

fn upload_error(deps: &Deps, error: UploadError) -> ServiceError {
    match error {
        UploadError::TooLarge { .. } => upload_too_large(&deps.file_policy),
        UploadError::NotUtf8 => ServiceError::invalid(
            "The file is not valid UTF-8 text; batch input must be JSONL.",
            Some("file"),
            Some("invalid_file_format"),
        ),
        UploadError::Interrupted(detail) => ServiceError::invalid(
            format!("The upload could not be read: {detail}"),
            Some("file"),
            Some("invalid_upload"),
        ),
        UploadError::Store(store) => ServiceError::Store(store),
    }
}

/// Writes the record of stored bytes, making the file visible. Its bytes are removed when the
/// record cannot be written.
pub async fn register_upload(
    deps: &Deps,
    upload: PendingUpload,
    filename: String,
    purpose: FilePurpose,
    expires_after: Option<Duration>,
) -> Result<FileRecord, ServiceError> {
    let now = deps.clock.now();
    let record = FileRecord {
        id: upload.id,
        tenant: upload.tenant,
        purpose,
        filename,
        bytes: upload.bytes,
        created_at: now,
        expires_at: Some(now.plus(expires_after.unwrap_or(BATCH_INPUT_TTL))),
    };
    if let Err(error) = deps.files.create(&record).await {
        discard_upload(deps, &record.tenant, &record.id).await;
        return Err(error.into());
    }
    Ok(record)
}

/// Removes the bytes of an upload that will not be registered.
pub async fn discard_upload(deps: &Deps, tenant: &TenantId, id: &FileId) {
    if let Err(error) = deps.blobs.delete(&file_blob_key(tenant, id)).await {
        tracing::warn!(%error, file_id = %id, "could not delete the bytes of a refused upload");
    }
}

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        what: "file",
        id: id.to_owned(),
    }
}

pub async fn get_file(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<FileRecord, ServiceError> {
    let file_id = FileId::parse(id).ok_or_else(|| not_found(id))?;
    deps.files
        .get(tenant, &file_id, deps.clock.now())
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn list_files(
    deps: &Deps,
    tenant: &TenantId,
    query: &FileListQuery,
) -> Result<Page<FileRecord>, ServiceError> {
    Ok(deps.files.list(tenant, query, deps.clock.now()).await?)
}

/// How a file's bytes reach the client.
pub enum FileContent {
    Stream {
        file: FileRecord,
        body: BlobStream,
    },
    /// Too large to pass through this process well: fetch it from here instead.
    Redirect {
        url: String,
    },
}

pub async fn file_content(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<FileContent, ServiceError> {
    let file = get_file(deps, tenant, id).await?;
    let policy = &deps.file_policy;
    if policy
        .redirect_downloads_above
        .is_some_and(|limit| file.bytes > limit)
        && let Some(url) = deps
            .blobs
            .presigned_get(&file.blob_key(), policy.presigned_url_ttl)
            .await?
    {
        return Ok(FileContent::Redirect { url });
    }
    let body = deps.blobs.get(&file.blob_key()).await?;
    Ok(FileContent::Stream { file, body })
}

/// Deletes the record, then the bytes (a failure there leaves them to the store's expiry).
#[tracing::instrument(skip_all, fields(tenant = %tenant, file_id = id))]
pub async fn delete_file(deps: &Deps, tenant: &TenantId, id: &str) -> Result<FileId, ServiceError> {
    let file_id = FileId::parse(id).ok_or_else(|| not_found(id))?;
    let record = deps
        .files
        .delete(tenant, &file_id, deps.clock.now())
        .await?
        .ok_or_else(|| not_found(id))?;
    if input_in_use(deps, tenant, &record.id).await? {
        // The batch's finalizer deletes the bytes once no unfinished batch reads them.
        tracing::info!("file deleted; its bytes stay while an unfinished batch reads them");
        return Ok(record.id);
    }
    if let Err(error) = deps.blobs.delete(&record.blob_key()).await {
        tracing::warn!(%error, "file record deleted but its bytes were not; expiry removes them");
    }
    Ok(record.id)
}

/// Whether an unfinished batch of the tenant reads this file. Only batches young enough to be
/// unfinished are looked at: a batch ends within its window (plus the finalizer's grace).
pub async fn input_in_use(
    deps: &Deps,
    tenant: &TenantId,
    file: &FileId,
) -> Result<bool, crate::error::StoreError> {
    let oldest = deps
        .clock
        .now()
        .minus(deps.batch_policy.completion_window + crate::batches::CANCEL_GRACE * 2);
    let mut after = None;
    loop {
        let page = deps.batches.list(tenant, 100, after.as_ref()).await?;
        for batch in &page.items {
            if batch.created_at < oldest {
                return Ok(false);
            }
            if !batch.status.is_terminal() && &batch.input_file_id == file {
                return Ok(true);
            }
        }
        match page.items.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => return Ok(false),
        }
    }
}

//! The Uploads API's rules as pure functions: what a create, a part, a complete and a cancel are
//! answered given the stored upload and the time. Adapters and services ask these; none
//! re-derives them.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::Value;

use crate::clock::Timestamp;
use crate::error::ServiceError;
use crate::files::service::MAX_FILENAME_BYTES;
use crate::files::{EXPIRES_AFTER_SECONDS, FilePurpose};
use crate::ids::{FileId, PartId};
use crate::uploads::{
    CompleteRequest, CompleteUploadRequest, CreateUploadRequest, MAX_PART_BYTES, MAX_PARTS,
    NewUpload, UPLOAD_RETENTION, Upload, UploadPart, UploadStatus,
};

fn invalid(message: impl Into<String>, param: &str, code: &str) -> ServiceError {
    ServiceError::invalid(message, Some(param), Some(code))
}

fn missing(param: &str) -> ServiceError {
    invalid(
        format!("Missing required parameter: '{param}'."),
        param,
        "missing_required_parameter",
    )
}

fn short_text(value: Option<Value>, param: &str) -> Result<String, ServiceError> {
    match value {
        None | Some(Value::Null) => Err(missing(param)),
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= MAX_FILENAME_BYTES => Ok(s),
        Some(_) => Err(invalid(
            format!(
                "Invalid '{param}': expected a non-empty string of at most {MAX_FILENAME_BYTES} bytes."
            ),
            param,
            "invalid_value",
        )),
    }
}

/// `POST /v1/uploads`: every field checked, each refusal naming its parameter. `max_file_bytes`
/// is the Files API's file cap (`files.max_upload_bytes`), not a request's size cap: the parts
/// are what crosses a request.
pub fn check_create(
    request: CreateUploadRequest,
    max_file_bytes: u64,
) -> Result<NewUpload, ServiceError> {
    let purpose = match request.purpose {
        None | Some(Value::Null) => return Err(missing("purpose")),
        Some(Value::String(p)) if FilePurpose::parse(&p) == Some(FilePurpose::Batch) => {
            FilePurpose::Batch
        }
        Some(other) => {
            return Err(invalid(
                format!("Invalid 'purpose': {other}. Prism accepts uploads with purpose 'batch'."),
                "purpose",
                "invalid_value",
            ));
        }
    };
    let bytes = match request.bytes {
        None | Some(Value::Null) => return Err(missing("bytes")),
        Some(value) => match value.as_u64() {
            Some(n) if n > max_file_bytes => {
                return Err(invalid(
                    format!(
                        "Invalid 'bytes': {n} is larger than the limit of {max_file_bytes} bytes per file."
                    ),
                    "bytes",
                    "file_too_large",
                ));
            }
            Some(n) if n > 0 => n,
            _ => {
                return Err(invalid(
                    "Invalid 'bytes': expected a positive integer.",
                    "bytes",
                    "invalid_value",
                ));
            }
        },
    };
    let filename = short_text(request.filename, "filename")?;
    let mime_type = short_text(request.mime_type, "mime_type")?;
    let file_expires_after = match request.expires_after {
        None | Some(Value::Null) => None,
        Some(value) => Some(check_expires_after(&value)?),
    };
    Ok(NewUpload {
        filename,
        purpose,
        bytes,
        mime_type,
        file_expires_after,
    })
}

fn check_expires_after(value: &Value) -> Result<Duration, ServiceError> {
    let anchor = value.get("anchor").and_then(Value::as_str);
    if anchor != Some("created_at") {
        return Err(invalid(
            "Invalid 'expires_after.anchor': expected 'created_at'.",
            "expires_after.anchor",
            "invalid_value",
        ));
    }
    match value.get("seconds").and_then(Value::as_u64) {
        Some(s) if EXPIRES_AFTER_SECONDS.contains(&s) => Ok(Duration::from_secs(s)),
        _ => Err(invalid(
            format!(
                "Invalid 'expires_after.seconds': expected an integer from {} to {}.",
                EXPIRES_AFTER_SECONDS.start(),
                EXPIRES_AFTER_SECONDS.end()
            ),
            "expires_after.seconds",
            "invalid_value",
        )),
    }
}

/// `POST /v1/uploads/{id}/complete`'s body: ids in the client's order, an optional md5 in hex.
pub fn check_complete_request(
    request: CompleteUploadRequest,
) -> Result<CompleteRequest, ServiceError> {
    let ids = match request.part_ids {
        None | Some(Value::Null) => return Err(missing("part_ids")),
        Some(Value::Array(ids)) => ids,
        Some(_) => {
            return Err(invalid(
                "Invalid 'part_ids': expected an array of part ids.",
                "part_ids",
                "invalid_value",
            ));
        }
    };
    if ids.is_empty() || ids.len() > MAX_PARTS {
        return Err(invalid(
            format!("Invalid 'part_ids': expected 1 to {MAX_PARTS} part ids."),
            "part_ids",
            "invalid_value",
        ));
    }
    let mut part_ids = Vec::with_capacity(ids.len());
    let mut seen = HashSet::new();
    for id in &ids {
        let text = id.as_str().unwrap_or_default();
        let Some(part) = PartId::parse(text) else {
            return Err(unknown_part(&id.to_string()));
        };
        if !seen.insert(part.clone()) {
            return Err(invalid(
                format!("Invalid 'part_ids': part '{part}' is listed more than once."),
                "part_ids",
                "duplicate_part",
            ));
        }
        part_ids.push(part);
    }
    let md5 = match request.md5 {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(_) => {
            return Err(invalid(
                "Invalid 'md5': expected 32 hexadecimal digits.",
                "md5",
                "invalid_value",
            ));
        }
    };
    Ok(CompleteRequest { part_ids, md5 })
}

fn unknown_part(id: &str) -> ServiceError {
    invalid(
        format!("Invalid 'part_ids': '{id}' is not a part of this upload."),
        "part_ids",
        "unknown_part",
    )
}

/// The 409 of an upload that takes no more calls of this kind.
fn not_pending(upload: &Upload, status: UploadStatus, doing: &str) -> ServiceError {
    ServiceError::StateConflict {
        message: format!(
            "Upload '{}' is {}; it cannot {doing}.",
            upload.id,
            status.as_str()
        ),
        param: None,
        code: format!("upload_{}", status.as_str()),
    }
}

/// Whether a part may be added now; checked before its bytes are stored, and again by the
/// store's conditional write after.
pub fn part_refusal(upload: &Upload, now: Timestamp) -> Result<(), ServiceError> {
    match upload.status_at(now) {
        UploadStatus::Pending => Ok(()),
        status => Err(not_pending(upload, status, "take more parts")),
    }
}

/// The largest part this upload takes: OpenAI's 64 MB, the backend's request cap, and never
/// more than the whole upload.
pub fn part_byte_limit(upload: &Upload, backend_part_cap: u64) -> u64 {
    MAX_PART_BYTES.min(backend_part_cap).min(upload.bytes)
}

/// What a complete does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompletionStep {
    /// The upload is completed by this same request already (a retry after a lost answer or a
    /// crash): answer it as it is.
    Replay(FileId),
    /// Join these parts, in this order, into a file; reuse `file_id` when the same request
    /// claimed one before (a repeat after a crash writes the same file).
    Begin {
        parts: Vec<UploadPart>,
        file_id: Option<FileId>,
    },
}

/// Decides a complete from the stored upload, its parts and the request: a state refusal (409),
/// a request that does not fit the parts (400, naming the parameter), a replay or a start.
pub fn completion(
    upload: &Upload,
    known: &[UploadPart],
    request: &CompleteRequest,
    now: Timestamp,
) -> Result<CompletionStep, ServiceError> {
    let same_request = upload
        .completion
        .as_ref()
        .is_some_and(|claim| claim.part_ids == request.part_ids && claim.md5 == request.md5);
    match upload.status_at(now) {
        UploadStatus::Pending => {}
        UploadStatus::Completed => {
            return match upload.file_id() {
                Some(file) if same_request => Ok(CompletionStep::Replay(file.clone())),
                _ => Err(ServiceError::StateConflict {
                    message: format!(
                        "Upload '{}' is already completed with other parts; it cannot be completed again.",
                        upload.id
                    ),
                    param: Some("part_ids".into()),
                    code: "upload_already_completed".into(),
                }),
            };
        }
        status => return Err(not_pending(upload, status, "be completed")),
    }
    let mut parts = Vec::with_capacity(request.part_ids.len());
    for id in &request.part_ids {
        match known
            .iter()
            .find(|p| &p.id == id && p.upload_id == upload.id)
        {
            Some(part) => parts.push(part.clone()),
            None => return Err(unknown_part(id.as_str())),
        }
    }
    let total: u64 = parts.iter().map(|p| p.bytes).sum();
    if total != upload.bytes {
        return Err(invalid(
            format!(
                "The parts hold {total} bytes, but the upload was created with 'bytes' = {}.",
                upload.bytes
            ),
            "bytes",
            "upload_size_mismatch",
        ));
    }
    let file_id = upload
        .completion
        .as_ref()
        .filter(|_| same_request)
        .map(|claim| claim.file_id.clone());
    Ok(CompletionStep::Begin { parts, file_id })
}

/// The 400 of a completed file whose md5 is not the one the client sent.
pub fn md5_mismatch(expected: &str, actual: &str) -> ServiceError {
    invalid(
        format!("The md5 of the parts is {actual}, not the given {expected}."),
        "md5",
        "md5_mismatch",
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStep {
    Cancel,
    /// Cancelled before: answered as it is.
    AlreadyCancelled,
}

pub fn cancellation(upload: &Upload, now: Timestamp) -> Result<CancelStep, ServiceError> {
    match upload.status_at(now) {
        UploadStatus::Pending => Ok(CancelStep::Cancel),
        UploadStatus::Cancelled => Ok(CancelStep::AlreadyCancelled),
        status => Err(not_pending(upload, status, "be cancelled")),
    }
}

/// Uploads that expired before this are removed with their parts.
pub fn purge_before(now: Timestamp) -> Timestamp {
    now.minus(UPLOAD_RETENTION)
}

#[cfg(test)]
#[path = "decisions_tests.rs"]
mod tests;

//! Uploads (OpenAI's Uploads API): a file sent in parts, each stored as it streams in, then
//! joined in the client's order into one ordinary file. The record, its statuses, its parts and
//! the create request; the rules are in [`decisions`], the routes' services in [`service`].

use std::time::Duration;

use serde::Deserialize;

use crate::clock::Timestamp;
use crate::files::FilePurpose;
use crate::ids::{FileId, PartId, TenantId, UploadId};

pub mod decisions;
pub mod service;

/// An upload takes parts and its complete for this long after its create, as on OpenAI.
pub const UPLOAD_TTL: Duration = Duration::from_secs(3600);
/// Records stay this long past their expiry, so a late part or complete is answered 409 rather
/// than 404; then they (and any part left) are removed.
pub const UPLOAD_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// OpenAI's largest part.
pub const MAX_PART_BYTES: u64 = 64 * 1024 * 1024;
/// Most parts one upload takes: enough for 200 MB in parts of 64 KiB.
pub const MAX_PARTS: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStatus {
    Pending,
    Completed,
    Cancelled,
    /// Never stored: a pending upload past its `expires_at`.
    Expired,
}

impl UploadStatus {
    pub const ALL: [UploadStatus; 4] = [
        UploadStatus::Pending,
        UploadStatus::Completed,
        UploadStatus::Cancelled,
        UploadStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UploadStatus::Pending => "pending",
            UploadStatus::Completed => "completed",
            UploadStatus::Cancelled => "cancelled",
            UploadStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(UploadStatus::Pending),
            "completed" => Some(UploadStatus::Completed),
            "cancelled" => Some(UploadStatus::Cancelled),
            "expired" => Some(UploadStatus::Expired),
            _ => None,
        }
    }
}

/// The file a complete is making: named before its bytes are written, so a complete repeated
/// after a crash writes the same file, and the upload turns `completed` in the same write that
/// makes the file visible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionClaim {
    pub file_id: FileId,
    pub part_ids: Vec<PartId>,
    pub md5: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: UploadId,
    pub tenant: TenantId,
    pub filename: String,
    pub purpose: FilePurpose,
    /// What the client declared; the completed file must have exactly this many bytes.
    pub bytes: u64,
    pub mime_type: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The completed file's own expiry (`expires_after`), if the client set one.
    pub file_expires_after: Option<Duration>,
    /// As stored: `pending`, `completed` or `cancelled`; see [`Upload::status_at`].
    pub status: UploadStatus,
    /// The latest complete's claim; on a completed upload, the one that made its file.
    pub completion: Option<CompletionClaim>,
}

impl Upload {
    /// The status a client sees: a pending upload past its expiry is `expired`.
    pub fn status_at(&self, now: Timestamp) -> UploadStatus {
        match self.status {
            UploadStatus::Pending if now >= self.expires_at => UploadStatus::Expired,
            status => status,
        }
    }

    /// The completed upload's file.
    pub fn file_id(&self) -> Option<&FileId> {
        match (self.status, &self.completion) {
            (UploadStatus::Completed, Some(claim)) => Some(&claim.file_id),
            _ => None,
        }
    }
}

/// One stored part; its bytes are the blob under [`part_blob_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadPart {
    pub id: PartId,
    pub upload_id: UploadId,
    pub tenant: TenantId,
    pub bytes: u64,
    pub created_at: Timestamp,
}

impl UploadPart {
    pub fn blob_key(&self) -> String {
        part_blob_key(&self.tenant, &self.upload_id, &self.id)
    }
}

/// Parts live under their upload's prefix (`uploads/`), which the bucket's lifecycle rule
/// empties on AWS whatever happens to the records.
pub fn part_blob_key(tenant: &TenantId, upload: &UploadId, part: &PartId) -> String {
    format!("{UPLOAD_BLOB_PREFIX}{tenant}/{upload}/{part}")
}

pub const UPLOAD_BLOB_PREFIX: &str = "uploads/";

/// `POST /v1/uploads`, as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct CreateUploadRequest {
    pub bytes: Option<serde_json::Value>,
    pub filename: Option<serde_json::Value>,
    pub mime_type: Option<serde_json::Value>,
    pub purpose: Option<serde_json::Value>,
    pub expires_after: Option<serde_json::Value>,
}

/// `POST /v1/uploads/{id}/complete`, as sent.
#[derive(Debug, Clone, Deserialize)]
pub struct CompleteUploadRequest {
    pub part_ids: Option<serde_json::Value>,
    pub md5: Option<serde_json::Value>,
}

/// A complete request that passed its shape checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteRequest {
    pub part_ids: Vec<PartId>,
    /// Lowercase hex.
    pub md5: Option<String>,
}

/// A create request that passed its checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUpload {
    pub filename: String,
    pub purpose: FilePurpose,
    pub bytes: u64,
    pub mime_type: String,
    pub file_expires_after: Option<Duration>,
}

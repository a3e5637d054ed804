//! Bytes and their records: the file store, the upload store and the blob store.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::files::{FileListQuery, FileRecord, UploadError, UploadStream};
use crate::ids::{FileId, TenantId, UploadId};
use crate::list::Page;
use crate::uploads::{CompletionClaim, Upload, UploadPart};

/// File records (the Files API). Bytes live in the [`BlobStore`]; a record is written only once
/// its bytes are stored, so every listed file can be read.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn create(&self, file: &FileRecord) -> Result<(), StoreError>;

    /// The tenant's file; `None` for another tenant's, an unknown, a deleted or an expired one.
    async fn get(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError>;

    async fn list(
        &self,
        tenant: &TenantId,
        query: &FileListQuery,
        now: Timestamp,
    ) -> Result<Page<FileRecord>, StoreError>;

    /// Removes the record; returns it (its blob is the caller's to delete), `None` if absent.
    async fn delete(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError>;

    /// Removes up to `limit` expired records and returns them, for their blobs to be deleted.
    /// Stores whose database expires items itself (DynamoDB TTL, with an S3 lifecycle rule for
    /// the bytes) return none.
    async fn purge_expired(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError>;
}

/// Uploads (the Uploads API) and their parts' records; the parts' bytes live in the
/// [`BlobStore`]. Every change is conditional on the upload's state, as
/// `uploads::decisions` states the rules: parts and completes only while `pending` and before
/// `expires_at`.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create(&self, upload: &Upload) -> Result<(), StoreError>;

    /// The tenant's upload, whatever its status; `None` for another tenant's, an unknown or a
    /// purged one.
    async fn get(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Upload>, StoreError>;

    /// Records a part whose bytes are stored, if its upload is `pending` and `now` is before its
    /// `expires_at`; false otherwise (the caller removes the bytes).
    async fn add_part(&self, part: &UploadPart, now: Timestamp) -> Result<bool, StoreError>;

    /// Every recorded part of the upload, in no particular order.
    async fn parts(&self, tenant: &TenantId, id: &UploadId) -> Result<Vec<UploadPart>, StoreError>;

    /// Sets the claim of a `pending` upload whose current claim names `previous` (none: no
    /// claim); false otherwise.
    async fn claim_completion(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        claim: &CompletionClaim,
        previous: Option<&FileId>,
    ) -> Result<bool, StoreError>;

    /// `pending -> completed` and the file's record, in one write, while the upload's claim
    /// names `file.id`; false otherwise. The file is visible exactly when the upload is
    /// completed, so a crash leaves no file or one whole one.
    async fn complete(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        file: &FileRecord,
    ) -> Result<bool, StoreError>;

    /// `pending -> cancelled` before `expires_at`; false otherwise.
    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Removes up to `limit` uploads that expired before `before` (any status) with their part
    /// records, and returns them for their parts' bytes to be deleted. Stores whose database
    /// expires items itself (DynamoDB TTL, with the bucket's lifecycle rule on `uploads/`)
    /// return none.
    async fn purge_expired(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Upload, Vec<UploadPart>)>, StoreError>;
}

/// A byte stream read back from the blob store.
pub type BlobStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// Bytes by key: local files embedded, S3 on AWS. Writes are streamed, never held whole.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the stream under `key` (replacing nothing: keys are unique), returning its length.
    /// Nothing is left under `key` when the stream fails.
    async fn put_stream(&self, key: &str, body: UploadStream<'_>) -> Result<u64, UploadError>;

    async fn get(&self, key: &str) -> Result<BlobStream, StoreError>;

    /// Bytes `[start, end)` of the blob.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, StoreError>;

    /// A URL a client can fetch the bytes from directly for `ttl`, where the store has one.
    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError>;

    /// Deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

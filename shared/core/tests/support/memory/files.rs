//! File records and blobs in memory. A blob is written only once its whole stream arrived, so a
//! failed upload leaves nothing, as the real blob stores promise.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prism_core::files::{FileListQuery, FileRecord, ListOrder, UploadError, UploadStream};
use prism_core::list::Page;
use prism_core::ports::{BlobStore, BlobStream, FileStore};
use prism_core::{FileId, StoreError, TenantId, Timestamp};

use super::lock;

fn is_live(file: &FileRecord, now: Timestamp) -> bool {
    file.expires_at.is_none_or(|at| at > now)
}

#[derive(Default)]
pub struct MemoryFileStore {
    records: Mutex<HashMap<FileId, FileRecord>>,
}

impl MemoryFileStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl FileStore for MemoryFileStore {
    async fn create(&self, file: &FileRecord) -> Result<(), StoreError> {
        lock(&self.records).insert(file.id.clone(), file.clone());
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        Ok(lock(&self.records)
            .get(id)
            .filter(|f| &f.tenant == tenant && is_live(f, now))
            .cloned())
    }

    async fn list(
        &self,
        tenant: &TenantId,
        query: &FileListQuery,
        now: Timestamp,
    ) -> Result<Page<FileRecord>, StoreError> {
        let records = lock(&self.records);
        let mut items: Vec<FileRecord> = records
            .values()
            .filter(|f| &f.tenant == tenant && is_live(f, now))
            .filter(|f| query.purpose.is_none_or(|p| f.purpose == p))
            .filter(|f| match (&query.after, query.order) {
                (None, _) => true,
                (Some(after), ListOrder::Desc) => &f.id < after,
                (Some(after), ListOrder::Asc) => &f.id > after,
            })
            .cloned()
            .collect();
        items.sort_by(|a, b| match query.order {
            ListOrder::Asc => a.id.cmp(&b.id),
            ListOrder::Desc => b.id.cmp(&a.id),
        });
        let has_more = items.len() > query.limit;
        items.truncate(query.limit);
        Ok(Page { items, has_more })
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        let mut records = lock(&self.records);
        let owned = records
            .get(id)
            .is_some_and(|f| &f.tenant == tenant && is_live(f, now));
        Ok(if owned { records.remove(id) } else { None })
    }

    async fn purge_expired(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError> {
        let mut records = lock(&self.records);
        let expired: Vec<FileId> = records
            .values()
            .filter(|f| !is_live(f, now))
            .map(|f| f.id.clone())
            .take(limit)
            .collect();
        Ok(expired.iter().filter_map(|id| records.remove(id)).collect())
    }
}

/// Blobs are read back in pieces of this size, so readers meet a real stream.
const READ_PIECE: usize = 64 * 1024;

#[derive(Default)]
pub struct MemoryBlobStore {
    blobs: Mutex<HashMap<String, Bytes>>,
    reads: Mutex<Vec<BlobRead>>,
}

/// A read of a blob, as the store saw it: what tests tell a whole read from a probe by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobRead {
    Whole(String),
    Range(String, u64, u64),
}

impl BlobRead {
    pub fn key(&self) -> &str {
        match self {
            BlobRead::Whole(key) | BlobRead::Range(key, _, _) => key,
        }
    }
}

impl MemoryBlobStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The reads so far of keys under `prefix`, in order (missing keys too).
    pub fn reads(&self, prefix: &str) -> Vec<BlobRead> {
        lock(&self.reads)
            .iter()
            .filter(|read| read.key().starts_with(prefix))
            .cloned()
            .collect()
    }

    /// The keys stored under `prefix`, sorted.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut keys: Vec<String> = lock(&self.blobs)
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        keys.sort();
        keys
    }

    pub fn bytes(&self, key: &str) -> Option<Bytes> {
        lock(&self.blobs).get(key).cloned()
    }
}

fn missing(key: &str) -> StoreError {
    StoreError::Unavailable(format!("no blob under {key}"))
}

#[async_trait]
impl BlobStore for MemoryBlobStore {
    async fn put_stream(&self, key: &str, mut body: UploadStream<'_>) -> Result<u64, UploadError> {
        let mut whole = Vec::new();
        while let Some(piece) = body.next().await {
            whole.extend_from_slice(&piece?);
        }
        let len = whole.len() as u64;
        lock(&self.blobs).insert(key.to_owned(), Bytes::from(whole));
        Ok(len)
    }

    async fn get(&self, key: &str) -> Result<BlobStream, StoreError> {
        lock(&self.reads).push(BlobRead::Whole(key.to_owned()));
        let whole = self.bytes(key).ok_or_else(|| missing(key))?;
        let pieces: Vec<Result<Bytes, StoreError>> = (0..whole.len())
            .step_by(READ_PIECE)
            .map(|at| Ok(whole.slice(at..whole.len().min(at + READ_PIECE))))
            .collect();
        Ok(futures::stream::iter(pieces).boxed())
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, StoreError> {
        lock(&self.reads).push(BlobRead::Range(key.to_owned(), start, end));
        let whole = self.bytes(key).ok_or_else(|| missing(key))?;
        let clamp = |at: u64| usize::try_from(at).unwrap_or(usize::MAX).min(whole.len());
        let (start, end) = (clamp(start), clamp(end));
        Ok(whole.slice(start..end.max(start)))
    }

    async fn presigned_get(
        &self,
        _key: &str,
        _ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        lock(&self.blobs).remove(key);
        Ok(())
    }
}

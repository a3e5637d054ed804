//! The `UploadStore` fake: uploads and parts in maps; a complete writes the file record into
//! the [`MemoryFileStore`] under the same lock order, as the real adapters do in one write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use prism_core::files::FileRecord;
use prism_core::ports::{FileStore, UploadStore};
use prism_core::uploads::{CompletionClaim, Upload, UploadPart, UploadStatus};
use prism_core::{FileId, StoreError, TenantId, Timestamp, UploadId};

use super::{MemoryFileStore, lock};

pub struct MemoryUploadStore {
    uploads: Mutex<HashMap<UploadId, (Upload, Vec<UploadPart>)>>,
    files: Arc<MemoryFileStore>,
}

impl MemoryUploadStore {
    pub fn new(files: Arc<MemoryFileStore>) -> Self {
        Self {
            uploads: Mutex::default(),
            files,
        }
    }
}

#[async_trait]
impl UploadStore for MemoryUploadStore {
    async fn create(&self, upload: &Upload) -> Result<(), StoreError> {
        lock(&self.uploads).insert(upload.id.clone(), (upload.clone(), Vec::new()));
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Upload>, StoreError> {
        Ok(lock(&self.uploads)
            .get(id)
            .filter(|(u, _)| &u.tenant == tenant)
            .map(|(u, _)| u.clone()))
    }

    async fn add_part(&self, part: &UploadPart, now: Timestamp) -> Result<bool, StoreError> {
        let mut uploads = lock(&self.uploads);
        match uploads.get_mut(&part.upload_id) {
            Some((u, parts))
                if u.tenant == part.tenant
                    && u.status == UploadStatus::Pending
                    && now < u.expires_at =>
            {
                parts.push(part.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn parts(&self, tenant: &TenantId, id: &UploadId) -> Result<Vec<UploadPart>, StoreError> {
        Ok(lock(&self.uploads)
            .get(id)
            .filter(|(u, _)| &u.tenant == tenant)
            .map(|(_, p)| p.clone())
            .unwrap_or_default())
    }

    async fn claim_completion(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        claim: &CompletionClaim,
        previous: Option<&FileId>,
    ) -> Result<bool, StoreError> {
        let mut uploads = lock(&self.uploads);
        match uploads.get_mut(id) {
            Some((u, _))
                if &u.tenant == tenant
                    && u.status == UploadStatus::Pending
                    && u.completion.as_ref().map(|c| &c.file_id) == previous =>
            {
                u.completion = Some(claim.clone());
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        file: &FileRecord,
    ) -> Result<bool, StoreError> {
        let applied = {
            let mut uploads = lock(&self.uploads);
            match uploads.get_mut(id) {
                Some((u, _))
                    if &u.tenant == tenant
                        && u.status == UploadStatus::Pending
                        && u.completion.as_ref().map(|c| &c.file_id) == Some(&file.id) =>
                {
                    u.status = UploadStatus::Completed;
                    true
                }
                _ => false,
            }
        };
        // Nothing else runs between the two in these single-task tests.
        if applied {
            self.files.create(file).await?;
        }
        Ok(applied)
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut uploads = lock(&self.uploads);
        match uploads.get_mut(id) {
            Some((u, _))
                if &u.tenant == tenant
                    && u.status == UploadStatus::Pending
                    && now < u.expires_at =>
            {
                u.status = UploadStatus::Cancelled;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn purge_expired(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Upload, Vec<UploadPart>)>, StoreError> {
        let mut uploads = lock(&self.uploads);
        let gone: Vec<UploadId> = uploads
            .values()
            .filter(|(u, _)| u.expires_at < before)
            .map(|(u, _)| u.id.clone())
            .take(limit)
            .collect();
        Ok(gone.iter().filter_map(|id| uploads.remove(id)).collect())
    }
}

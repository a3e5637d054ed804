//! API key records in memory.

use std::sync::Mutex;

use async_trait::async_trait;
use prism_core::keys::ApiKeyRecord;
use prism_core::ports::KeyStore;
use prism_core::{StoreError, Timestamp};

use super::lock;

#[derive(Default)]
pub struct MemoryKeyStore {
    records: Mutex<Vec<ApiKeyRecord>>,
}

impl MemoryKeyStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        lock(&self.records).push(record.clone());
        Ok(())
    }

    async fn find_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.records).iter().find(|r| r.hash == hash).cloned())
    }

    async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        Ok(lock(&self.records).clone())
    }

    async fn revoke(&self, id_or_prefix: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut records = lock(&self.records);
        let found = records.iter_mut().find(|r| {
            r.revoked_at.is_none()
                && (r.id.as_str() == id_or_prefix || r.display_prefix == id_or_prefix)
        });
        Ok(found.map(|r| r.revoked_at = Some(now)).is_some())
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(lock(&self.records).is_empty())
    }
}

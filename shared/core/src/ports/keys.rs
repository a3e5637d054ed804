//! API keys: the key store.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::keys::ApiKeyRecord;

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes the key with this id or display prefix; false when none matched.
    async fn revoke(&self, id_or_prefix: &str, now: Timestamp) -> Result<bool, StoreError>;
    async fn is_empty(&self) -> Result<bool, StoreError>;
}

//! `prism keys`: create, list and revoke API keys in the embedded store.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use prism_aws::{AwsBackend, AwsSettings, SettingsError};
use prism_core::ids::IdGenerator;
use prism_core::keys::{ApiKeyRecord, mint_key};
use prism_core::ports::KeyStore;
use prism_core::{Clock, StoreError, SystemClock, TenantId};
use prism_embedded::{DATABASE_FILE, Database, SqliteKeyStore};

use crate::cli::{Backend, StoreArgs};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("invalid tenant name '{0}': use 1-64 letters, digits, '-', '_' or '.'")]
    InvalidTenant(String),
    #[error("no key matches '{0}'")]
    UnknownKey(String),
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Settings(#[from] SettingsError),
}

/// The key store of the chosen backend.
pub async fn open_key_store(store: &StoreArgs) -> Result<Arc<dyn KeyStore>, KeysError> {
    match store.backend {
        Backend::Embedded => {
            let data_dir: &Path = &store.data.data_dir;
            std::fs::create_dir_all(data_dir)
                .map_err(|e| KeysError::DataDir(data_dir.display().to_string(), e))?;
            let db = Database::open(&data_dir.join(DATABASE_FILE))?;
            Ok(Arc::new(SqliteKeyStore::new(db)))
        }
        Backend::Aws => {
            let settings = AwsSettings::from_lookup(|k| std::env::var(k).ok())?;
            let backend = AwsBackend::connect(settings, Duration::ZERO).await;
            Ok(Arc::new(backend.keys))
        }
    }
}

/// Mints and stores a key; returns the secret, which exists nowhere else afterwards.
pub async fn create_key(store: &dyn KeyStore, tenant: &str) -> Result<String, KeysError> {
    let tenant =
        TenantId::parse(tenant).ok_or_else(|| KeysError::InvalidTenant(tenant.to_owned()))?;
    let now = SystemClock.now();
    let minted = mint_key(IdGenerator::new().key_id(now), tenant, now);
    store.insert(&minted.record).await?;
    Ok(minted.secret)
}

pub async fn list_keys(store: &dyn KeyStore) -> Result<Vec<ApiKeyRecord>, KeysError> {
    Ok(store.list().await?)
}

pub async fn revoke_key(store: &dyn KeyStore, key: &str) -> Result<(), KeysError> {
    if store.revoke(key, SystemClock.now()).await? {
        Ok(())
    } else {
        Err(KeysError::UnknownKey(key.to_owned()))
    }
}

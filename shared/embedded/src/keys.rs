//! API key records in SQLite (hashes only, never keys).

use async_trait::async_trait;
use prism_core::keys::ApiKeyRecord;
use prism_core::ports::KeyStore;
use prism_core::{KeyId, StoreError, TenantId, Timestamp};
use rusqlite::{OptionalExtension, Row, params};

use crate::db::Database;

#[derive(Clone)]
pub struct SqliteKeyStore {
    db: Database,
}

impl SqliteKeyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

const COLUMNS: &str = "id, tenant, hash, display_prefix, created_at, revoked_at";

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    let bad = |what: &str| {
        rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
    };
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    Ok(ApiKeyRecord {
        id: KeyId::parse(&id).ok_or_else(|| bad("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| bad("tenant"))?,
        hash: row.get(2)?,
        display_prefix: row.get(3)?,
        created_at: Timestamp(row.get(4)?),
        revoked_at: row.get::<_, Option<i64>>(5)?.map(Timestamp),
    })
}

#[async_trait]
impl KeyStore for SqliteKeyStore {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let r = record.clone();
        self.db
            .write(move |conn| {
                conn.execute(
                    &format!("INSERT INTO api_keys ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"),
                    params![
                        r.id.as_str(),
                        r.tenant.as_str(),
                        r.hash,
                        r.display_prefix,
                        r.created_at.0,
                        r.revoked_at.map(|t| t.0)
                    ],
                )
                .map(|_| ())
            })
            .await
    }

    async fn find_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let hash = hash.to_owned();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE hash = ?1"))?
                    .query_row(params![hash], record_from_row)
                    .optional()
            })
            .await
    }

    async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        self.db
            .read(|conn| {
                conn.prepare(&format!("SELECT {COLUMNS} FROM api_keys ORDER BY id"))?
                    .query_map([], record_from_row)?
                    .collect()
            })
            .await
    }

    async fn revoke(&self, id_or_prefix: &str, now: Timestamp) -> Result<bool, StoreError> {
        let needle = id_or_prefix.to_owned();
        self.db
            .write(move |conn| {
                conn.execute(
                    "UPDATE api_keys SET revoked_at = ?2 \
                     WHERE (id = ?1 OR display_prefix = ?1) AND revoked_at IS NULL",
                    params![needle, now.0],
                )
                .map(|n| n > 0)
            })
            .await
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        self.db
            .read(|conn| {
                conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM api_keys)", [], |r| {
                    r.get::<_, bool>(0)
                })
            })
            .await
    }
}

//! File records in SQLite: the `FileStore` port. Bytes live in the [`crate::LocalBlobStore`].

use async_trait::async_trait;
use prism_core::files::{FileListQuery, FilePurpose, FileRecord, ListOrder};
use prism_core::list::Page;
use prism_core::ports::FileStore;
use prism_core::{FileId, StoreError, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::Database;

const FILE_COLUMNS: &str = "id, tenant, purpose, filename, bytes, created_at, expires_at";

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn file_from_row(row: &Row<'_>) -> rusqlite::Result<FileRecord> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let purpose: String = row.get(2)?;
    Ok(FileRecord {
        id: FileId::parse(&id).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        purpose: FilePurpose::parse(&purpose).ok_or_else(|| corrupt("purpose"))?,
        filename: row.get(3)?,
        bytes: u64::try_from(row.get::<_, i64>(4)?).map_err(|_| corrupt("bytes"))?,
        created_at: Timestamp(row.get(5)?),
        expires_at: row.get::<_, Option<i64>>(6)?.map(Timestamp),
    })
}

fn load_live(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: i64,
) -> rusqlite::Result<Option<FileRecord>> {
    conn.prepare_cached(&format!(
        "SELECT {FILE_COLUMNS} FROM files \
         WHERE id = ?1 AND tenant = ?2 AND (expires_at IS NULL OR expires_at > ?3)"
    ))?
    .query_row(params![id, tenant, now], file_from_row)
    .optional()
}

/// Inserts a file's record; also what a completed upload writes in its own transaction.
pub(crate) fn insert_file(conn: &Connection, file: &FileRecord) -> rusqlite::Result<()> {
    conn.prepare_cached(&format!(
        "INSERT INTO files ({FILE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
    ))?
    .execute(params![
        file.id.as_str(),
        file.tenant.as_str(),
        file.purpose.as_str(),
        file.filename,
        i64::try_from(file.bytes).unwrap_or(i64::MAX),
        file.created_at.0,
        file.expires_at.map(|t| t.0)
    ])
    .map(|_| ())
}

#[derive(Clone)]
pub struct SqliteFileStore {
    db: Database,
}

impl SqliteFileStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl FileStore for SqliteFileStore {
    async fn create(&self, file: &FileRecord) -> Result<(), StoreError> {
        let file = file.clone();
        self.db.write(move |conn| insert_file(conn, &file)).await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .read(move |conn| load_live(conn, tenant.as_str(), id.as_str(), now.0))
            .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        query: &FileListQuery,
        now: Timestamp,
    ) -> Result<Page<FileRecord>, StoreError> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.db
            .read(move |conn| {
                // Ids sort by creation time, so `order` and `after` are key order.
                let (cursor, direction) = match query.order {
                    ListOrder::Desc => ("id < ?4", "DESC"),
                    ListOrder::Asc => ("id > ?4", "ASC"),
                };
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {FILE_COLUMNS} FROM files \
                     WHERE tenant = ?1 AND (expires_at IS NULL OR expires_at > ?2) \
                       AND (?3 IS NULL OR purpose = ?3) AND (?4 IS NULL OR {cursor}) \
                     ORDER BY id {direction} LIMIT ?5"
                ))?;
                let fetch = i64::try_from(query.limit + 1).unwrap_or(i64::MAX);
                let mut items = stmt
                    .query_map(
                        params![
                            tenant.as_str(),
                            now.0,
                            query.purpose.map(FilePurpose::as_str),
                            query.after.as_ref().map(FileId::as_str),
                            fetch
                        ],
                        file_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = items.len() > query.limit;
                items.truncate(query.limit);
                Ok(Page { items, has_more })
            })
            .await
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .write(move |conn| {
                let Some(file) = load_live(conn, tenant.as_str(), id.as_str(), now.0)? else {
                    return Ok(None);
                };
                conn.prepare_cached("DELETE FROM files WHERE id = ?1")?
                    .execute(params![id.as_str()])?;
                Ok(Some(file))
            })
            .await
    }

    async fn purge_expired(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError> {
        self.db
            .write(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                conn.prepare_cached(&format!(
                    "DELETE FROM files WHERE id IN \
                     (SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2) \
                     RETURNING {FILE_COLUMNS}"
                ))?
                .query_map(params![now.0, limit], file_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
    }
}

//! Uploads in SQLite: the `UploadStore` port. One row per upload, one per part; a complete
//! flips the upload and inserts the file's record in one transaction. Parts' bytes live in the
//! [`crate::LocalBlobStore`]; the reconciler purges expired uploads with them.

use std::time::Duration;

use async_trait::async_trait;
use prism_core::files::{FilePurpose, FileRecord};
use prism_core::ports::UploadStore;
use prism_core::uploads::{CompletionClaim, Upload, UploadPart, UploadStatus};
use prism_core::{FileId, PartId, StoreError, TenantId, Timestamp, UploadId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::Database;
use crate::files::insert_file;

const UPLOAD_COLUMNS: &str = "id, tenant, filename, purpose, bytes, mime_type, created_at, \
    expires_at, file_expires_after, status, claim_file_id, claim_part_ids, claim_md5";
const PART_COLUMNS: &str = "id, upload_id, tenant, bytes, created_at";

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn u64_of(value: i64, what: &str) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(what))
}

fn upload_from_row(row: &Row<'_>) -> rusqlite::Result<Upload> {
    let text = |i: usize| row.get::<_, String>(i);
    let claim = match row.get::<_, Option<String>>(10)? {
        None => None,
        Some(file) => Some(CompletionClaim {
            file_id: FileId::parse(&file).ok_or_else(|| corrupt("claim_file_id"))?,
            part_ids: row
                .get::<_, Option<String>>(11)?
                .unwrap_or_default()
                .split(' ')
                .map(|id| PartId::parse(id).ok_or_else(|| corrupt("claim_part_ids")))
                .collect::<rusqlite::Result<_>>()?,
            md5: row.get(12)?,
        }),
    };
    Ok(Upload {
        id: UploadId::parse(&text(0)?).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&text(1)?).ok_or_else(|| corrupt("tenant"))?,
        filename: text(2)?,
        purpose: FilePurpose::parse(&text(3)?).ok_or_else(|| corrupt("purpose"))?,
        bytes: u64_of(row.get(4)?, "bytes")?,
        mime_type: text(5)?,
        created_at: Timestamp(row.get(6)?),
        expires_at: Timestamp(row.get(7)?),
        file_expires_after: row
            .get::<_, Option<i64>>(8)?
            .map(|s| u64_of(s, "file_expires_after").map(Duration::from_secs))
            .transpose()?,
        status: UploadStatus::parse(&text(9)?).ok_or_else(|| corrupt("status"))?,
        completion: claim,
    })
}

fn part_from_row(row: &Row<'_>) -> rusqlite::Result<UploadPart> {
    Ok(UploadPart {
        id: PartId::parse(&row.get::<_, String>(0)?).ok_or_else(|| corrupt("id"))?,
        upload_id: UploadId::parse(&row.get::<_, String>(1)?)
            .ok_or_else(|| corrupt("upload_id"))?,
        tenant: TenantId::parse(&row.get::<_, String>(2)?).ok_or_else(|| corrupt("tenant"))?,
        bytes: u64_of(row.get(3)?, "bytes")?,
        created_at: Timestamp(row.get(4)?),
    })
}

fn parts_of(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Vec<UploadPart>> {
    conn.prepare_cached(&format!(
        "SELECT {PART_COLUMNS} FROM upload_parts WHERE upload_id = ?1 AND tenant = ?2"
    ))?
    .query_map(params![id, tenant], part_from_row)?
    .collect()
}

fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[derive(Clone)]
pub struct SqliteUploadStore {
    db: Database,
}

impl SqliteUploadStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl UploadStore for SqliteUploadStore {
    async fn create(&self, upload: &Upload) -> Result<(), StoreError> {
        let u = upload.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO uploads ({UPLOAD_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, NULL, NULL)"
                ))?
                .execute(params![
                    u.id.as_str(),
                    u.tenant.as_str(),
                    u.filename,
                    u.purpose.as_str(),
                    i64_of(u.bytes),
                    u.mime_type,
                    u.created_at.0,
                    u.expires_at.0,
                    u.file_expires_after.map(|d| i64_of(d.as_secs())),
                    u.status.as_str(),
                ])
                .map(|_| ())
            })
            .await
    }

    async fn get(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Upload>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?1 AND tenant = ?2"
                ))?
                .query_row(params![id.as_str(), tenant.as_str()], upload_from_row)
                .optional()
            })
            .await
    }

    async fn add_part(&self, part: &UploadPart, now: Timestamp) -> Result<bool, StoreError> {
        let part = part.clone();
        self.db
            .write(move |conn| {
                let inserted = conn
                    .prepare_cached(&format!(
                        "INSERT INTO upload_parts ({PART_COLUMNS}) \
                         SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS (SELECT 1 FROM uploads \
                           WHERE id = ?2 AND tenant = ?3 AND status = 'pending' AND expires_at > ?6)"
                    ))?
                    .execute(params![
                        part.id.as_str(),
                        part.upload_id.as_str(),
                        part.tenant.as_str(),
                        i64_of(part.bytes),
                        part.created_at.0,
                        now.0
                    ])?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn parts(&self, tenant: &TenantId, id: &UploadId) -> Result<Vec<UploadPart>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .read(move |conn| parts_of(conn, tenant.as_str(), id.as_str()))
            .await
    }

    async fn claim_completion(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        claim: &CompletionClaim,
        previous: Option<&FileId>,
    ) -> Result<bool, StoreError> {
        let (tenant, id, claim) = (tenant.clone(), id.clone(), claim.clone());
        let previous = previous.map(|f| f.as_str().to_owned());
        self.db
            .write(move |conn| {
                let ids: Vec<&str> = claim.part_ids.iter().map(PartId::as_str).collect();
                let changed = conn
                    .prepare_cached(
                        "UPDATE uploads SET claim_file_id = ?3, claim_part_ids = ?4, claim_md5 = ?5 \
                         WHERE id = ?1 AND tenant = ?2 AND status = 'pending' \
                           AND claim_file_id IS ?6",
                    )?
                    .execute(params![
                        id.as_str(),
                        tenant.as_str(),
                        claim.file_id.as_str(),
                        ids.join(" "),
                        claim.md5,
                        previous
                    ])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        file: &FileRecord,
    ) -> Result<bool, StoreError> {
        let (tenant, id, file) = (tenant.clone(), id.clone(), file.clone());
        self.db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE uploads SET status = 'completed' \
                         WHERE id = ?1 AND tenant = ?2 AND status = 'pending' AND claim_file_id = ?3",
                    )?
                    .execute(params![id.as_str(), tenant.as_str(), file.id.as_str()])?;
                if changed == 1 {
                    insert_file(conn, &file)?;
                }
                Ok(changed == 1)
            })
            .await
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .write(move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE uploads SET status = 'cancelled' \
                         WHERE id = ?1 AND tenant = ?2 AND status = 'pending' AND expires_at > ?3",
                    )?
                    .execute(params![id.as_str(), tenant.as_str(), now.0])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn purge_expired(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Upload, Vec<UploadPart>)>, StoreError> {
        self.db
            .write(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                let gone = conn
                    .prepare_cached(&format!(
                        "DELETE FROM uploads WHERE id IN \
                         (SELECT id FROM uploads WHERE expires_at < ?1 LIMIT ?2) \
                         RETURNING {UPLOAD_COLUMNS}"
                    ))?
                    .query_map(params![before.0, limit], upload_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut purged = Vec::with_capacity(gone.len());
                for upload in gone {
                    let parts = conn
                        .prepare_cached(&format!(
                            "DELETE FROM upload_parts WHERE upload_id = ?1 RETURNING {PART_COLUMNS}"
                        ))?
                        .query_map(params![upload.id.as_str()], part_from_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?;
                    purged.push((upload, parts));
                }
                Ok(purged)
            })
            .await
    }
}

//! Batch and chunk rows in SQLite: the column lists, reading a row into a core value, and the
//! small shared writes (a chunk's lease, the terminal event) the store's transitions use.

use std::collections::BTreeMap;
use std::time::Duration;

use prism_core::batches::decisions;
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::native::live_counts;
use prism_core::batches::{
    Batch, BatchErrors, BatchRef, BatchStatus, Chunk, FinalizeLease, Part, RequestCounts, Usage,
};
use prism_core::pricing::UsageByModel;
use prism_core::webhooks::{EventKind, WebhookEvent};
use prism_core::{BatchId, FileId, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::webhooks::record_outbox_event;
pub(super) const BATCH_COLUMNS: &str = "id, tenant, status, input_file_id, endpoint, completion_window, \
    metadata, output_expires_after, created_at, expires_at, in_progress_at, finalizing_at, \
    completed_at, failed_at, expired_at, cancelling_at, cancelled_at, total, completed, failed, \
    usage, errors, output_file_id, error_file_id, model, chunks, chunks_done, finalize, usage_by_model, native_counts";

/// The terminal statuses as an SQL list: `('failed', ...)`.
pub(super) fn terminal_list() -> String {
    let names: Vec<String> = BatchStatus::TERMINAL
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn json<T: serde::de::DeserializeOwned>(
    text: Option<String>,
    what: &str,
) -> rusqlite::Result<Option<T>> {
    text.map(|t| serde_json::from_str(&t))
        .transpose()
        .map_err(|_| corrupt(what))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn ts(row: &Row<'_>, i: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(i)?.map(Timestamp))
}

fn count(row: &Row<'_>, i: usize) -> rusqlite::Result<u64> {
    u64::try_from(row.get::<_, i64>(i)?).map_err(|_| corrupt("count"))
}

pub(super) fn batch_from_row(row: &Row<'_>) -> rusqlite::Result<Batch> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let status: String = row.get(2)?;
    let input: String = row.get(3)?;
    let status = BatchStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    let committed = RequestCounts {
        total: count(row, 17)?,
        completed: count(row, 18)?,
        failed: count(row, 19)?,
    };
    let native: BTreeMap<u32, RequestCounts> =
        json(row.get(29)?, "native_counts")?.unwrap_or_default();
    let file_id = |text: Option<String>| -> rusqlite::Result<Option<FileId>> {
        text.map(|t| FileId::parse(&t).ok_or_else(|| corrupt("file id")))
            .transpose()
    };
    Ok(Batch {
        id: BatchId::parse(&id).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        status,
        input_file_id: FileId::parse(&input).ok_or_else(|| corrupt("input_file_id"))?,
        endpoint: {
            let path: String = row.get(4)?;
            prism_core::ApiEndpoint::from_path(&path).ok_or_else(|| corrupt("endpoint"))?
        },
        completion_window: row.get(5)?,
        metadata: json(row.get(6)?, "metadata")?,
        output_expires_after: row
            .get::<_, Option<i64>>(7)?
            .and_then(|ms| u64::try_from(ms).ok())
            .map(Duration::from_millis),
        created_at: Timestamp(row.get(8)?),
        expires_at: Timestamp(row.get(9)?),
        in_progress_at: ts(row, 10)?,
        finalizing_at: ts(row, 11)?,
        completed_at: ts(row, 12)?,
        failed_at: ts(row, 13)?,
        expired_at: ts(row, 14)?,
        cancelling_at: ts(row, 15)?,
        cancelled_at: ts(row, 16)?,
        counts: live_counts(status, committed, &native),
        usage: json::<Usage>(row.get(20)?, "usage")?.unwrap_or_default(),
        errors: json::<BatchErrors>(row.get(21)?, "errors")?,
        output_file_id: file_id(row.get(22)?)?,
        error_file_id: file_id(row.get(23)?)?,
        model: row.get(24)?,
        chunks: row.get(25)?,
        chunks_done: row.get(26)?,
        finalize: json::<FinalizeLease>(row.get(27)?, "finalize")?,
        usage_by_model: json::<UsageByModel>(row.get(28)?, "usage_by_model")?.unwrap_or_default(),
    })
}

pub(super) fn chunk_from_row(row: &Row<'_>) -> rusqlite::Result<Chunk> {
    Ok(Chunk {
        plan: ChunkPlan {
            index: row.get(0)?,
            start: count(row, 1)?,
            end: count(row, 2)?,
            lines: row.get(3)?,
            native: row.get(9)?,
        },
        cursor: row.get(4)?,
        parts: json::<Vec<Part>>(row.get(5)?, "parts")?.unwrap_or_default(),
        done: row.get(6)?,
        lease_token: row.get(7)?,
        lease_expires_at: ts(row, 8)?,
    })
}

pub(super) const CHUNK_COLUMNS: &str =
    "idx, start, \"end\", lines, cursor, parts, done, lease_token, lease_expires_at, native";

pub(super) fn load(conn: &Connection, tenant: &str, id: &str) -> rusqlite::Result<Option<Batch>> {
    conn.prepare_cached(&format!(
        "SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?1 AND tenant = ?2"
    ))?
    .query_row(params![id, tenant], batch_from_row)
    .optional()
}

pub(super) fn load_chunk(
    conn: &Connection,
    batch: &str,
    index: u32,
) -> rusqlite::Result<Option<Chunk>> {
    conn.prepare_cached(&format!(
        "SELECT {CHUNK_COLUMNS} FROM batch_chunks WHERE batch_id = ?1 AND idx = ?2"
    ))?
    .query_row(params![batch, index], chunk_from_row)
    .optional()
}

/// Whether planning may still settle the batch (`decisions::planning_settles`), as stored now.
pub(super) fn settled_by_planning(conn: &Connection, batch: &BatchRef) -> rusqlite::Result<bool> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM batches WHERE id = ?1 AND tenant = ?2")?
        .query_row(params![batch.id.as_str(), batch.tenant.as_str()], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(status
        .as_deref()
        .and_then(BatchStatus::parse)
        .is_some_and(decisions::planning_settles))
}

/// Stores the chunk's lease as a decision left it (taken, or given up).
pub(super) fn write_lease(conn: &Connection, batch: &str, chunk: &Chunk) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE batch_chunks SET lease_token = ?3, lease_expires_at = ?4 \
         WHERE batch_id = ?1 AND idx = ?2",
    )?
    .execute(params![
        batch,
        chunk.plan.index,
        chunk.lease_token,
        chunk.lease_expires_at.map(|t| t.0)
    ])
    .map(|_| ())
}

/// The outbox write: the event announcing the batch's terminal status, in the same transaction.
pub(super) fn record_batch_event(
    conn: &Connection,
    batch: &BatchRef,
    kind: EventKind,
    now: Timestamp,
) -> rusqlite::Result<()> {
    record_outbox_event(
        conn,
        &WebhookEvent::for_subject(&batch.tenant, kind, batch.id.as_str(), now),
    )
    .map(|_| ())
}

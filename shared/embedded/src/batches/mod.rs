//! Batches in SQLite: the `BatchStore` port. A batch row carries its counters; one row per chunk
//! carries its byte range, cursor, committed parts and lease. Every transition runs on the single
//! writer, so a check and its write are one step, as a conditional write is on DynamoDB. Every
//! terminal write also records its webhook event (the outbox) in the same transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use prism_core::batches::decisions::{self, CancelDecision};
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchRef, BatchStatus, Chunk, ChunkClaim, ChunkWrite,
    ClaimPurpose, FinalizeLease, NewBatch, Part, RequestCounts,
};
use prism_core::list::Page;
use prism_core::ports::{BatchResult, BatchStore, Lease};
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::webhooks::EventKind;
use prism_core::{BatchId, FileId, StoreError, TenantId, Timestamp};
use rusqlite::{OptionalExtension, params};
use tokio::sync::Notify;

use crate::db::Database;

mod rows;

use rows::{
    BATCH_COLUMNS, CHUNK_COLUMNS, batch_from_row, chunk_from_row, load, load_chunk,
    record_batch_event, settled_by_planning, terminal_list, to_json, write_lease,
};

#[derive(Clone)]
pub struct SqliteBatchStore {
    db: Database,
    wake: Arc<Notify>,
}

impl SqliteBatchStore {
    pub fn new(db: Database) -> Self {
        Self {
            db,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the queue's dispatcher when a terminal write queued a webhook event.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Self {
        self.wake = wake;
        self
    }

    /// At start (the data-directory lock is held): every chunk and finalize claim belongs to the
    /// previous process, so they are released at once.
    pub async fn reclaim_all_leases(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.db
            .write(move |conn| {
                let chunks = conn.execute(
                    "UPDATE batch_chunks SET lease_token = NULL, lease_expires_at = NULL \
                     WHERE lease_token IS NOT NULL AND done = 0",
                    [],
                )?;
                conn.execute(
                    "UPDATE batches SET finalize = json_set(finalize, '$.expires_at', ?1) \
                     WHERE status = ?2 AND finalize IS NOT NULL",
                    params![now.0, BatchStatus::Finalizing.as_str()],
                )?;
                Ok(chunks)
            })
            .await
    }
}

#[async_trait]
impl BatchStore for SqliteBatchStore {
    async fn create(&self, batch: &NewBatch) -> Result<(), StoreError> {
        let batch = batch.clone();
        self.db
            .write(move |conn| {
                let metadata = batch.metadata.as_ref().map(to_json).transpose()?;
                conn.prepare_cached(
                    "INSERT INTO batches (id, tenant, status, input_file_id, endpoint, \
                       completion_window, metadata, output_expires_after, created_at, expires_at) \
                     VALUES (?1, ?2, 'validating', ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )?
                .execute(params![
                    batch.id.as_str(),
                    batch.tenant.as_str(),
                    batch.input_file_id.as_str(),
                    batch.endpoint.path(),
                    batch.completion_window,
                    metadata,
                    batch
                        .output_expires_after
                        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
                    batch.created_at.0,
                    batch.expires_at.0
                ])
                .map(|_| ())
            })
            .await
    }

    async fn withdraw(&self, batch: &BatchRef) -> Result<bool, StoreError> {
        let batch = batch.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM batches WHERE id = ?1 AND tenant = ?2 AND status = ?3",
                )?
                .execute(params![
                    batch.id.as_str(),
                    batch.tenant.as_str(),
                    BatchStatus::Validating.as_str()
                ])
                .map(|n| n == 1)
            })
            .await
    }

    async fn get(&self, tenant: &TenantId, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .read(move |conn| load(conn, tenant.as_str(), id.as_str()))
            .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&BatchId>,
    ) -> Result<Page<Batch>, StoreError> {
        let (tenant, after) = (tenant.clone(), after.cloned());
        self.db
            .read(move |conn| {
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let mut items = conn
                    .prepare_cached(&format!(
                        "SELECT {BATCH_COLUMNS} FROM batches WHERE tenant = ?1 \
                         AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
                    ))?
                    .query_map(
                        params![tenant.as_str(), after.as_ref().map(BatchId::as_str), fetch],
                        batch_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = items.len() > limit;
                items.truncate(limit);
                Ok(Page { items, has_more })
            })
            .await
    }

    async fn plan(
        &self,
        batch: &BatchRef,
        chunks: &[ChunkPlan],
        total: u64,
        model: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (batch, chunks, model) = (batch.clone(), chunks.to_vec(), model.map(str::to_owned));
        self.db
            .write(move |conn| {
                if !settled_by_planning(conn, &batch)? {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "UPDATE batches SET status = ?2, in_progress_at = ?3, total = ?4, model = ?5, \
                     chunks = ?6 WHERE id = ?1",
                )?
                .execute(params![
                    batch.id.as_str(),
                    BatchStatus::InProgress.as_str(),
                    now.0,
                    i64::try_from(total).unwrap_or(i64::MAX),
                    model,
                    u32::try_from(chunks.len()).unwrap_or(u32::MAX)
                ])?;
                let mut insert = conn.prepare_cached(
                    "INSERT INTO batch_chunks (batch_id, idx, start, \"end\", lines, native) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for chunk in &chunks {
                    insert.execute(params![
                        batch.id.as_str(),
                        chunk.index,
                        i64::try_from(chunk.start).unwrap_or(i64::MAX),
                        i64::try_from(chunk.end).unwrap_or(i64::MAX),
                        chunk.lines,
                        chunk.native
                    ])?;
                }
                Ok(true)
            })
            .await
    }

    async fn fail(
        &self,
        batch: &BatchRef,
        errors: &BatchErrors,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (batch, errors) = (batch.clone(), errors.clone());
        let failed = self
            .db
            .write(move |conn| {
                if !settled_by_planning(conn, &batch)? {
                    return Ok(false);
                }
                let written = conn
                    .prepare_cached(
                        "UPDATE batches SET status = ?2, failed_at = ?3, errors = ?4 WHERE id = ?1",
                    )?
                    .execute(params![
                        batch.id.as_str(),
                        BatchStatus::Failed.as_str(),
                        now.0,
                        to_json(&errors)?
                    ])?;
                if written == 1 {
                    record_batch_event(conn, &batch, EventKind::BatchFailed, now)?;
                }
                Ok(written == 1)
            })
            .await?;
        if failed {
            self.wake.notify_one();
        }
        Ok(failed)
    }

    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        purpose: ClaimPurpose,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError> {
        let (batch, lease) = (batch.clone(), lease.clone());
        self.db
            .write(move |conn| {
                let current = load(conn, batch.tenant.as_str(), batch.id.as_str())?;
                let record = load_chunk(conn, batch.id.as_str(), chunk)?;
                let (current, record) =
                    match decisions::chunk_claim(current, record, &lease, purpose, now) {
                        Ok(taken) => taken,
                        Err(refusal) => return Ok(refusal),
                    };
                write_lease(conn, batch.id.as_str(), &record)?;
                Ok(ChunkClaim::Claimed {
                    batch: Box::new(current),
                    chunk: record,
                })
            })
            .await
    }

    async fn checkpoint(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        part: &Part,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        let (batch, token, part) = (batch.clone(), token.to_owned(), part.clone());
        self.db
            .write(move |conn| {
                let Some(current) = load(conn, batch.tenant.as_str(), batch.id.as_str())? else {
                    return Ok(ChunkWrite::Refused);
                };
                let Some(mut record) = load_chunk(conn, batch.id.as_str(), chunk)? else {
                    return Ok(ChunkWrite::Refused);
                };
                let answer = decisions::commit_answer(&current, &record, &token, now);
                if answer == ChunkWrite::Refused {
                    return Ok(answer);
                }
                record.cursor += part.lines;
                record.parts.push(part.clone());
                conn.prepare_cached(
                    "UPDATE batch_chunks SET cursor = ?3, parts = ?4, lease_expires_at = ?5 \
                     WHERE batch_id = ?1 AND idx = ?2",
                )?
                .execute(params![
                    batch.id.as_str(),
                    chunk,
                    record.cursor,
                    to_json(&record.parts)?,
                    lease_until.0
                ])?;
                let mut usage = current.usage;
                usage.add(&part.usage);
                conn.prepare_cached(
                    "UPDATE batches SET completed = completed + ?2, failed = failed + ?3, usage = ?4 \
                     WHERE id = ?1",
                )?
                .execute(params![
                    batch.id.as_str(),
                    part.completed,
                    part.failed,
                    to_json(&usage)?
                ])?;
                Ok(answer)
            })
            .await
    }

    async fn renew_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        let (batch, token) = (batch.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                let (Some(current), Some(record)) = (
                    load(conn, batch.tenant.as_str(), batch.id.as_str())?,
                    load_chunk(conn, batch.id.as_str(), chunk)?,
                ) else {
                    return Ok(ChunkWrite::Refused);
                };
                let answer = decisions::renew_answer(&current, &record, &token);
                if answer != ChunkWrite::Refused {
                    conn.prepare_cached(
                        "UPDATE batch_chunks SET lease_expires_at = ?3 WHERE batch_id = ?1 AND idx = ?2",
                    )?
                    .execute(params![batch.id.as_str(), chunk, lease_until.0])?;
                }
                Ok(answer)
            })
            .await
    }

    async fn complete_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let (batch, token) = (batch.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                let Some(done) = load_chunk(conn, batch.id.as_str(), chunk)?
                    .and_then(|record| decisions::completed_chunk(record, &token))
                else {
                    return Ok(false);
                };
                write_lease(conn, batch.id.as_str(), &done)?;
                conn.prepare_cached(
                    "UPDATE batch_chunks SET done = ?3 WHERE batch_id = ?1 AND idx = ?2",
                )?
                .execute(params![batch.id.as_str(), chunk, done.done])?;
                conn.prepare_cached(
                    "UPDATE batches SET chunks_done = chunks_done + 1 WHERE id = ?1",
                )?
                .execute(params![batch.id.as_str()])?;
                Ok(true)
            })
            .await
    }

    async fn release_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let (batch, token) = (batch.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                let Some(released) = load_chunk(conn, batch.id.as_str(), chunk)?
                    .and_then(|record| decisions::released_chunk(record, &token))
                else {
                    return Ok(false);
                };
                write_lease(conn, batch.id.as_str(), &released)?;
                Ok(true)
            })
            .await
    }

    async fn chunks(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError> {
        let batch = batch.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CHUNK_COLUMNS} FROM batch_chunks WHERE batch_id = ?1 ORDER BY idx"
                ))?
                .query_map(params![batch.id.as_str()], chunk_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<BatchCancelOutcome, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .write(move |conn| {
                match decisions::cancel_decision(load(conn, tenant.as_str(), id.as_str())?, now) {
                    CancelDecision::Answer(outcome) => Ok(outcome),
                    CancelDecision::Cancel(cancelling) => {
                        conn.prepare_cached(
                            "UPDATE batches SET status = ?2, cancelling_at = ?3 WHERE id = ?1",
                        )?
                        .execute(params![
                            id.as_str(),
                            cancelling.status.as_str(),
                            cancelling.cancelling_at.map(|t| t.0)
                        ])?;
                        Ok(BatchCancelOutcome::Accepted(cancelling))
                    }
                }
            })
            .await
    }

    async fn claim_finalize(
        &self,
        batch: &BatchRef,
        lease: &FinalizeLease,
        now: Timestamp,
    ) -> Result<Option<Batch>, StoreError> {
        let (batch, lease) = (batch.clone(), lease.clone());
        self.db
            .write(move |conn| {
                let Some(current) = load(conn, batch.tenant.as_str(), batch.id.as_str())? else {
                    return Ok(None);
                };
                let Some(held) = decisions::finalize_lease(&current, &lease, now) else {
                    return Ok(None);
                };
                let finalizing = decisions::finalizing(current, held, now);
                conn.prepare_cached(
                    "UPDATE batches SET status = ?2, finalizing_at = ?3, finalize = ?4 WHERE id = ?1",
                )?
                .execute(params![
                    batch.id.as_str(),
                    finalizing.status.as_str(),
                    finalizing.finalizing_at.map(|t| t.0),
                    finalizing.finalize.as_ref().map(to_json).transpose()?
                ])?;
                Ok(Some(finalizing))
            })
            .await
    }

    async fn renew_finalize(
        &self,
        batch: &BatchRef,
        token: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (batch, token) = (batch.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                let Some(current) = load(conn, batch.tenant.as_str(), batch.id.as_str())? else {
                    return Ok(false);
                };
                let Some(renewed) = decisions::renewed_finalize(&current, &token, until) else {
                    return Ok(false);
                };
                conn.prepare_cached("UPDATE batches SET finalize = ?2 WHERE id = ?1")?
                    .execute(params![batch.id.as_str(), to_json(&renewed)?])?;
                Ok(true)
            })
            .await
    }

    async fn finish(
        &self,
        batch: &BatchRef,
        token: &str,
        result: &BatchResult,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (batch, token, result) = (batch.clone(), token.to_owned(), result.clone());
        let finished = self
            .db
            .write(move |conn| {
                let Some(current) = load(conn, batch.tenant.as_str(), batch.id.as_str())? else {
                    return Ok(false);
                };
                if !decisions::finalize_holds(&current, &token) {
                    return Ok(false);
                }
                let column = match result.outcome {
                    prism_core::batches::BatchOutcome::Completed => "completed_at",
                    prism_core::batches::BatchOutcome::Cancelled => "cancelled_at",
                    prism_core::batches::BatchOutcome::Expired => "expired_at",
                };
                conn.prepare_cached(&format!(
                    "UPDATE batches SET status = ?2, {column} = ?3, total = ?4, completed = ?5, \
                     failed = ?6, usage = ?7, output_file_id = ?8, error_file_id = ?9, finalize = NULL, \
                     usage_by_model = ?10 WHERE id = ?1"
                ))?
                .execute(params![
                    batch.id.as_str(),
                    result.outcome.as_str(),
                    now.0,
                    i64::try_from(result.counts.total).unwrap_or(i64::MAX),
                    i64::try_from(result.counts.completed).unwrap_or(i64::MAX),
                    i64::try_from(result.counts.failed).unwrap_or(i64::MAX),
                    to_json(&result.usage)?,
                    result.output_file_id.as_ref().map(FileId::as_str),
                    result.error_file_id.as_ref().map(FileId::as_str),
                    to_json(&result.usage_by_model)?
                ])?;
                record_batch_event(conn, &batch, EventKind::of_batch(result.outcome), now)?;
                crate::usage::add(conn, &batch.tenant, &result.counted)?;
                Ok(true)
            })
            .await?;
        if finished {
            self.wake.notify_one();
        }
        Ok(finished)
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        crate::usage::read(&self.db, tenant, from, to, &[UsageKind::Batch]).await
    }

    async fn count_active(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let tenant = tenant.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT COUNT(*) FROM batches WHERE tenant = ?1 AND status NOT IN {}",
                    terminal_list()
                ))?
                .query_row(params![tenant.as_str()], |r| r.get::<_, i64>(0))
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            })
            .await
    }

    async fn unfinished(&self, limit: usize) -> Result<Vec<BatchRef>, StoreError> {
        self.db
            .read(move |conn| {
                let rows = conn
                    .prepare_cached(&format!(
                        "SELECT id, tenant FROM batches WHERE status NOT IN {} LIMIT ?1",
                        terminal_list()
                    ))?
                    .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(rows
                    .into_iter()
                    .filter_map(|(id, tenant)| {
                        Some(BatchRef {
                            id: BatchId::parse(&id)?,
                            tenant: TenantId::parse(&tenant)?,
                        })
                    })
                    .collect())
            })
            .await
    }

    async fn record_provider_counts(
        &self,
        batch: &BatchRef,
        group: u32,
        counts: &RequestCounts,
    ) -> Result<bool, StoreError> {
        let (batch, counts) = (batch.clone(), *counts);
        self.db
            .write(move |conn| {
                let stored: Option<Option<String>> = conn
                    .prepare_cached(&format!(
                        "SELECT native_counts FROM batches \
                         WHERE id = ?1 AND tenant = ?2 AND status NOT IN {}",
                        terminal_list()
                    ))?
                    .query_row(params![batch.id.as_str(), batch.tenant.as_str()], |r| {
                        r.get(0)
                    })
                    .optional()?;
                let Some(stored) = stored else {
                    return Ok(false);
                };
                // Read and written on the one writer: no other write comes between.
                let mut native: BTreeMap<u32, RequestCounts> = stored
                    .and_then(|text| serde_json::from_str(&text).ok())
                    .unwrap_or_default();
                native.insert(group, counts);
                conn.prepare_cached("UPDATE batches SET native_counts = ?2 WHERE id = ?1")?
                    .execute(params![batch.id.as_str(), to_json(&native)?])?;
                Ok(true)
            })
            .await
    }
}

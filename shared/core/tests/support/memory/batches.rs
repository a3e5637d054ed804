//! The batch store in memory. Every conditional transition asks core's batch decisions
//! (`batches::decisions`): planning, chunk claims, who may commit, complete or release a chunk,
//! the finalize lease, cancel.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use prism_core::batches::decisions::{self, CancelDecision};
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::native::live_counts;
use prism_core::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, BatchStatus, Chunk, ChunkClaim,
    ChunkWrite, ClaimPurpose, FinalizeLease, NewBatch, Part, RequestCounts,
};
use prism_core::list::Page;
use prism_core::ports::{BatchResult, BatchStore, Lease};
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::{BatchId, StoreError, TenantId, Timestamp};

use super::lock;

#[derive(Debug, Clone)]
struct Row {
    batch: Batch,
    chunks: Vec<Chunk>,
    /// Native groups' counts as their providers last reported them.
    native: BTreeMap<u32, RequestCounts>,
}

#[derive(Default)]
pub struct MemoryBatchStore {
    rows: Mutex<HashMap<BatchId, Row>>,
    /// Every count a finish added, as it was added.
    counted: Mutex<Vec<(TenantId, UsageCount)>>,
}

fn find<'a>(rows: &'a mut HashMap<BatchId, Row>, batch: &BatchRef) -> Option<&'a mut Row> {
    rows.get_mut(&batch.id)
        .filter(|r| r.batch.tenant == batch.tenant)
}

impl MemoryBatchStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Lets a chunk's lease run out now, as if its processor died long ago.
    pub fn lapse_chunk_lease(&self, batch: &BatchRef, chunk: u32) {
        let mut rows = lock(&self.rows);
        if let Some(record) = find(&mut rows, batch).and_then(|r| r.chunks.get_mut(chunk as usize))
        {
            record.lease_expires_at = Some(Timestamp(0));
        }
    }
}

#[async_trait]
impl BatchStore for MemoryBatchStore {
    async fn create(&self, batch: &NewBatch) -> Result<(), StoreError> {
        lock(&self.rows).insert(
            batch.id.clone(),
            Row {
                batch: Batch::from_new(batch),
                chunks: Vec::new(),
                native: BTreeMap::new(),
            },
        );
        Ok(())
    }

    async fn withdraw(&self, batch: &BatchRef) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let validating = rows.get(&batch.id).is_some_and(|r| {
            r.batch.tenant == batch.tenant
                && prism_core::batches::decisions::planning_settles(r.batch.status)
        });
        if validating {
            rows.remove(&batch.id);
        }
        Ok(validating)
    }

    async fn get(&self, tenant: &TenantId, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        Ok(lock(&self.rows)
            .get(id)
            .filter(|r| &r.batch.tenant == tenant)
            .map(|r| Batch {
                counts: live_counts(r.batch.status, r.batch.counts, &r.native),
                ..r.batch.clone()
            }))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&BatchId>,
    ) -> Result<Page<Batch>, StoreError> {
        let rows = lock(&self.rows);
        let mut items: Vec<Batch> = rows
            .values()
            .map(|r| &r.batch)
            .filter(|b| &b.tenant == tenant && after.is_none_or(|a| &b.id < a))
            .cloned()
            .collect();
        items.sort_by(|a, b| b.id.cmp(&a.id));
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    async fn plan(
        &self,
        batch: &BatchRef,
        chunks: &[ChunkPlan],
        total: u64,
        model: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(false);
        };
        // As on DynamoDB: the chunk records go first, each only if it is not there yet, and
        // stay when the transition is then refused (a batch cancelled while validating).
        for plan in chunks.iter().skip(row.chunks.len()) {
            row.chunks.push(Chunk::new(plan.clone()));
        }
        if !decisions::planning_settles(row.batch.status) {
            return Ok(false);
        }
        row.batch.status = BatchStatus::InProgress;
        row.batch.in_progress_at = Some(now);
        row.batch.counts.total = total;
        row.batch.model = model.map(str::to_owned);
        row.batch.chunks = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        Ok(true)
    }

    async fn fail(
        &self,
        batch: &BatchRef,
        errors: &BatchErrors,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) =
            find(&mut rows, batch).filter(|r| decisions::planning_settles(r.batch.status))
        else {
            return Ok(false);
        };
        row.batch.status = BatchStatus::Failed;
        row.batch.failed_at = Some(now);
        row.batch.errors = Some(errors.clone());
        Ok(true)
    }

    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        purpose: ClaimPurpose,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError> {
        let mut rows = lock(&self.rows);
        let row = find(&mut rows, batch);
        let current = row.as_ref().map(|r| r.batch.clone());
        let record = row
            .as_ref()
            .and_then(|r| r.chunks.get(chunk as usize).cloned());
        let (current, record) = match decisions::chunk_claim(current, record, lease, purpose, now) {
            Ok(taken) => taken,
            Err(refusal) => return Ok(refusal),
        };
        if let Some(slot) = row.and_then(|r| r.chunks.get_mut(chunk as usize)) {
            *slot = record.clone();
        }
        Ok(ChunkClaim::Claimed {
            batch: Box::new(current),
            chunk: record,
        })
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
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(ChunkWrite::Refused);
        };
        let Some(record) = row.chunks.get_mut(chunk as usize) else {
            return Ok(ChunkWrite::Refused);
        };
        let answer = decisions::commit_answer(&row.batch, record, token, now);
        if answer == ChunkWrite::Refused {
            return Ok(answer);
        }
        record.cursor += part.lines;
        record.parts.push(part.clone());
        record.lease_expires_at = Some(lease_until);
        row.batch.counts.completed += u64::from(part.completed);
        row.batch.counts.failed += u64::from(part.failed);
        row.batch.usage.add(&part.usage);
        Ok(answer)
    }

    async fn complete_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(false);
        };
        let Some(record) = row.chunks.get_mut(chunk as usize) else {
            return Ok(false);
        };
        let Some(done) = decisions::completed_chunk(record.clone(), token) else {
            return Ok(false);
        };
        *record = done;
        row.batch.chunks_done += 1;
        Ok(true)
    }

    async fn renew_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(ChunkWrite::Refused);
        };
        let Some(record) = row.chunks.get_mut(chunk as usize) else {
            return Ok(ChunkWrite::Refused);
        };
        let answer = decisions::renew_answer(&row.batch, record, token);
        if answer != ChunkWrite::Refused {
            record.lease_expires_at = Some(lease_until);
        }
        Ok(answer)
    }

    async fn release_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(record) = find(&mut rows, batch).and_then(|r| r.chunks.get_mut(chunk as usize))
        else {
            return Ok(false);
        };
        let Some(released) = decisions::released_chunk(record.clone(), token) else {
            return Ok(false);
        };
        *record = released;
        Ok(true)
    }

    async fn chunks(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError> {
        let mut rows = lock(&self.rows);
        Ok(find(&mut rows, batch).map_or_else(Vec::new, |r| r.chunks.clone()))
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<BatchCancelOutcome, StoreError> {
        let mut rows = lock(&self.rows);
        let row = rows.get_mut(id).filter(|r| &r.batch.tenant == tenant);
        match decisions::cancel_decision(row.as_ref().map(|r| r.batch.clone()), now) {
            CancelDecision::Answer(outcome) => Ok(outcome),
            CancelDecision::Cancel(cancelling) => {
                if let Some(row) = row {
                    row.batch = cancelling.clone();
                }
                Ok(BatchCancelOutcome::Accepted(cancelling))
            }
        }
    }

    async fn claim_finalize(
        &self,
        batch: &BatchRef,
        lease: &FinalizeLease,
        now: Timestamp,
    ) -> Result<Option<Batch>, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(None);
        };
        let Some(held) = decisions::finalize_lease(&row.batch, lease, now) else {
            return Ok(None);
        };
        row.batch = decisions::finalizing(row.batch.clone(), held, now);
        Ok(Some(row.batch.clone()))
    }

    async fn renew_finalize(
        &self,
        batch: &BatchRef,
        token: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch) else {
            return Ok(false);
        };
        let Some(renewed) = decisions::renewed_finalize(&row.batch, token, until) else {
            return Ok(false);
        };
        row.batch.finalize = Some(renewed);
        Ok(true)
    }

    async fn finish(
        &self,
        batch: &BatchRef,
        token: &str,
        result: &BatchResult,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) =
            find(&mut rows, batch).filter(|r| decisions::finalize_holds(&r.batch, token))
        else {
            return Ok(false);
        };
        let b = &mut row.batch;
        b.status = result.outcome.status();
        match result.outcome {
            BatchOutcome::Completed => b.completed_at = Some(now),
            BatchOutcome::Cancelled => b.cancelled_at = Some(now),
            BatchOutcome::Expired => b.expired_at = Some(now),
        }
        b.counts = result.counts;
        b.usage = result.usage;
        b.usage_by_model = result.usage_by_model.clone();
        b.output_file_id = result.output_file_id.clone();
        b.error_file_id = result.error_file_id.clone();
        b.finalize = None;
        let tenant = b.tenant.clone();
        drop(rows);
        lock(&self.counted).extend(result.counted.iter().map(|c| (tenant.clone(), c.clone())));
        Ok(true)
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        Ok(lock(&self.counted)
            .iter()
            .filter(|(t, c)| t == tenant && from <= c.day && c.day <= to)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn count_active(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        Ok(lock(&self.rows)
            .values()
            .filter(|r| &r.batch.tenant == tenant && !r.batch.status.is_terminal())
            .count())
    }

    async fn unfinished(&self, limit: usize) -> Result<Vec<BatchRef>, StoreError> {
        let rows = lock(&self.rows);
        let mut found: Vec<BatchRef> = rows
            .values()
            .filter(|r| !r.batch.status.is_terminal())
            .map(|r| r.batch.batch_ref())
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    async fn record_provider_counts(
        &self,
        batch: &BatchRef,
        group: u32,
        counts: &RequestCounts,
    ) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some(row) = find(&mut rows, batch).filter(|r| !r.batch.status.is_terminal()) else {
            return Ok(false);
        };
        row.native.insert(group, *counts);
        Ok(true)
    }
}

//! Batches: the batch store with its chunk records, and what a finalizer writes.

use async_trait::async_trait;

use crate::batches::input::ChunkPlan;
use crate::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, Chunk, ChunkClaim, ChunkWrite,
    ClaimPurpose, FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::{BatchId, FileId, TenantId};
use crate::list::Page;
use crate::pricing::UsageByModel;
use crate::usage::counters::{Day, UsageCount};

use super::jobs::Lease;

/// Batches and their chunk records. Every transition is conditional; a processor's writes name
/// its chunk lease's token, and none lands once the batch stops taking results.
#[async_trait]
pub trait BatchStore: Send + Sync {
    async fn create(&self, batch: &NewBatch) -> Result<(), StoreError>;

    /// Removes a batch its own create takes back (`decisions::create_stands` said its input
    /// file went while it was written), while it is still `validating`; false when it is gone
    /// or has moved on. Nothing was queued for it yet.
    async fn withdraw(&self, batch: &BatchRef) -> Result<bool, StoreError>;

    /// The tenant's batch; `None` for another tenant's or an unknown one.
    async fn get(&self, tenant: &TenantId, id: &BatchId) -> Result<Option<Batch>, StoreError>;

    /// Newest first.
    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&BatchId>,
    ) -> Result<Page<Batch>, StoreError>;

    /// `validating -> in_progress` with one record per chunk; false when planning no longer
    /// settles it (`decisions::planning_settles`).
    async fn plan(
        &self,
        batch: &BatchRef,
        chunks: &[ChunkPlan],
        total: u64,
        model: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// `validating -> failed` with the validation errors; false when planning no longer settles
    /// it (`decisions::planning_settles`).
    async fn fail(
        &self,
        batch: &BatchRef,
        errors: &BatchErrors,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Takes the chunk under `lease` if it is not done, not held, and the batch still takes
    /// results for `purpose` (`decisions::claim_allowed`: `in_progress` and before
    /// `expires_at`; a collect also while `cancelling`).
    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        purpose: ClaimPurpose,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError>;

    /// Commits a part: appends it, moves the cursor and adds its counts to the batch's, all in
    /// one write, as `decisions::commit_answer` decides (also while the batch is cancelling, so
    /// finished lines are kept). Also renews the lease.
    async fn checkpoint(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        part: &Part,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<ChunkWrite, StoreError>;

    /// Marks the chunk done and counts it on the batch, once, while `token` holds
    /// (`decisions::completed_chunk`).
    async fn complete_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError>;

    /// Extends the chunk's lease as `decisions::renew_answer` decides (a processor between
    /// checkpoints); the answer is how a holder with nothing to commit learns of a cancel.
    async fn renew_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError>;

    /// Gives the chunk up (a processor near its deadline or shutting down), if `token` still
    /// holds its lease (`decisions::released_chunk`).
    async fn release_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError>;

    /// Every chunk record, in index order.
    async fn chunks(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError>;

    /// `validating | in_progress -> cancelling`; a cancelling or cancelled batch is accepted as is.
    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<BatchCancelOutcome, StoreError>;

    /// `in_progress | cancelling | validating -> finalizing` under `lease`, or a take-over of a
    /// `finalizing` batch whose finalizer's lease ended (keeping its outcome and file ids).
    /// Returns the batch as claimed, `None` when someone else holds it or it is terminal.
    async fn claim_finalize(
        &self,
        batch: &BatchRef,
        lease: &FinalizeLease,
        now: Timestamp,
    ) -> Result<Option<Batch>, StoreError>;

    /// Extends the finalizer's lease to `until` while `token` holds it
    /// (`decisions::renewed_finalize`); false once another finalizer took over or the batch
    /// ended, and the finalizer then stops.
    async fn renew_finalize(
        &self,
        batch: &BatchRef,
        token: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// `finalizing -> completed | cancelled | expired` with the files and final counts, while the
    /// finalizer's token holds; adds [`BatchResult::counted`] to the tenant's usage counters in
    /// the same write.
    async fn finish(
        &self,
        batch: &BatchRef,
        token: &str,
        result: &BatchResult,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The tenant's usage counters of days `from..=to` (UTC) of batches: what
    /// [`BatchStore::finish`] added (entries of one key sum, as for jobs).
    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError>;

    /// The tenant's batches not yet terminal (the per-tenant cap).
    async fn count_active(&self, tenant: &TenantId) -> Result<usize, StoreError>;

    /// Batches not yet terminal, for the reconciler.
    async fn unfinished(&self, limit: usize) -> Result<Vec<BatchRef>, StoreError>;

    /// Records a native group's counts as its provider last reported them (one entry per group,
    /// replaced at each look), while the batch is not terminal; a read of the batch shows them in
    /// its `request_counts` (`native::live_counts`). False when the batch is missing or ended.
    async fn record_provider_counts(
        &self,
        batch: &BatchRef,
        group: u32,
        counts: &RequestCounts,
    ) -> Result<bool, StoreError>;
}

/// What a finalizer writes on the batch when it finishes.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchResult {
    pub outcome: BatchOutcome,
    pub counts: RequestCounts,
    pub usage: Usage,
    /// The same usage per model and tier: what the batch's cost is priced from.
    pub usage_by_model: UsageByModel,
    pub output_file_id: Option<FileId>,
    pub error_file_id: Option<FileId>,
    /// What the batch adds to the usage counters, written with its end.
    pub counted: Vec<UsageCount>,
}

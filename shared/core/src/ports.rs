//! The ports every backend implements (SQLite + local files embedded; DynamoDB, SQS and S3 on
//! AWS). Semantics follow the stricter backend: single-item conditional writes, at-least-once
//! delivery with a visibility timeout, and fencing tokens on every write a worker makes. Traits
//! and the plain types their signatures speak only: the rules they follow are the aggregates'
//! `decisions`, [`crate::stage`] and [`crate::upstream`].

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::batches::input::ChunkPlan;
use crate::batches::native::{NewProviderBatch, ProviderBatch};
use crate::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, Chunk, ChunkClaim, ChunkWrite,
    FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use crate::clock::Timestamp;
use crate::endpoint::ApiEndpoint;
use crate::error::StoreError;
use crate::files::{FileListQuery, FileRecord, UploadError, UploadStream};
use crate::ids::{BatchId, FileId, JobId, TenantId, UploadId};
use crate::jobs::{Finish, Job, JobError, JobKind, JobRef, NewJob};
use crate::keys::ApiKeyRecord;
use crate::list::{ListQuery, Page};
use crate::pricing::UsageByModel;
use crate::recurring::{Recurring, RecurringRef};
use crate::responses::events::RecordedEvent;
use crate::uploads::{CompletionClaim, Upload, UploadPart};
use crate::usage::counters::{Day, UsageCount};
use crate::webhooks::target::TargetError;
use crate::webhooks::{Attempt, DeliveryState, Endpoint, EventRef, WebhookEvent};

/// A worker's hold on a running job. Every write the worker makes names the token; a write with a
/// token that no longer holds is discarded, so a stale worker cannot overwrite a newer one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub token: String,
    pub expires_at: Timestamp,
}

/// Makes a create replay-safe: the first create under `(tenant, key)` wins; a later one learns
/// which job won and whether its body was the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    pub key: String,
    pub body_hash: String,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CreateOutcome {
    /// Written. `triggered` is true when the same write also queued the job's first delivery
    /// (the embedded queue lives on the job row), so the caller must not enqueue it again.
    Created { triggered: bool },
    /// The key was used before, for `job_id`; `same_body` tells whether the bodies match.
    Replayed { job_id: JobId, same_body: bool },
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The job is now `running` under the caller's lease; `attempts` already counts this one.
    Claimed(Job),
    /// Another worker holds a live lease until the given time.
    Busy { lease_expires_at: Timestamp },
    /// A scheduled job delivered before its time: left `pending`, to be delivered again then.
    NotDue { due_at: Timestamp },
    /// Nothing left to do: the job is terminal.
    Terminal(Job),
    /// Unknown or already expired.
    Missing,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    Cancelled(Job),
    AlreadyCancelled(Job),
    /// Completed or failed: too late to cancel.
    Finished(Job),
    NotFound,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Writes a `pending` job, and its idempotency record if one is given, all or nothing.
    async fn create(
        &self,
        job: &NewJob,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError>;

    /// The tenant's job; `None` for another tenant's, an unknown or an expired one.
    async fn get(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
    ) -> Result<Option<Job>, StoreError>;

    /// The job's request body, for the worker.
    async fn request_body(&self, job: &JobRef) -> Result<Option<Bytes>, StoreError>;

    /// The tenant's jobs of one kind, newest first, skipping expired ones.
    async fn list(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        query: &ListQuery,
        now: Timestamp,
    ) -> Result<Page<Job>, StoreError>;

    /// `pending -> running`, or `running -> running` when the previous lease expired or was
    /// released; counts one more upstream attempt. Never before a scheduled job's `scheduled_at`.
    async fn claim(
        &self,
        job: &JobRef,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError>;

    /// Extends the lease for upstream attempt number `attempt` (`decisions::next_attempt`) and
    /// sets the job's count to it: a set, so the same write applied twice counts it once. False
    /// when the token no longer holds (cancelled, or another worker took over).
    async fn begin_attempt(
        &self,
        job: &JobRef,
        token: &str,
        attempt: u32,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Gives the lease up for a long retry wait: any delivery may claim the job at once, and the
    /// reconciler treats it as stranded only once `retry_at` is well past.
    async fn release(
        &self,
        job: &JobRef,
        token: &str,
        retry_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// `running -> completed | failed` if `token` still holds; sets the retention deadline. A
    /// completion's [`Finish::Completed::counted`] is added to the tenant's usage counters in the
    /// same write, so only the write that finishes the job counts it.
    async fn finish(
        &self,
        job: &JobRef,
        token: &str,
        outcome: &Finish,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// The tenant's usage counters of days `from..=to` (UTC), of the kinds jobs count
    /// ([`crate::usage::UsageKind::OF_JOBS`]): what [`JobStore::finish`] added. A store may
    /// spread one day, kind, model and tier over several entries; their sum is the count.
    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError>;

    /// Whether the job is still `running` under `token`; what a worker polls to notice cancel.
    async fn still_holds(&self, job: &JobRef, token: &str) -> Result<bool, StoreError>;

    /// `pending | running -> cancelled` for the owning tenant.
    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<CancelOutcome, StoreError>;

    /// Fails a job that is not yet terminal whatever lease it has: the dead-letter path.
    async fn fail_unfinished(
        &self,
        job: &JobRef,
        error: &JobError,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Jobs the reconciler must trigger again: `pending` ones created (scheduled jobs: due)
    /// before `before`, and
    /// `running` ones whose lease (or released retry time) ended before `before`, in both cases
    /// unless the adapter knows a trigger is still waiting for them.
    async fn stranded(&self, before: Timestamp, limit: usize) -> Result<Vec<JobRef>, StoreError>;

    /// Deletes jobs (and idempotency records) whose retention has passed; returns how many.
    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError>;

    /// Appends a streamed background response's events while the job is `running` under
    /// `token`, all or nothing; false when the lease is gone (cancelled or taken over). A worker
    /// writes each sequence number once (a write sent again writes the same event).
    async fn append_events(
        &self,
        job: &JobRef,
        token: &str,
        events: &[RecordedEvent],
    ) -> Result<bool, StoreError> {
        let _ = (job, token, events);
        Err(StoreError::Unavailable(
            "this backend does not record response streams".to_owned(),
        ))
    }

    /// The recorded events with a sequence number above `after` (all when `None`), in order, at
    /// most `limit`.
    async fn events_after(
        &self,
        job: &JobRef,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let _ = (job, after, limit);
        Err(StoreError::Unavailable(
            "this backend does not record response streams".to_owned(),
        ))
    }
}

/// What a queue message names. Messages carry ids, never payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkItem {
    Job(JobRef),
    /// Validate a batch's input and plan its chunks.
    PlanBatch(BatchRef),
    /// Run one chunk of a batch.
    RunChunk {
        batch: BatchRef,
        chunk: u32,
    },
    /// Assemble a batch's output once its chunks are done (or it is cancelled or expired).
    FinalizeBatch(BatchRef),
    /// Deliver one webhook event to the endpoints that receive it.
    Webhook(EventRef),
    /// One look at a native group of a batch (one provider batch per (provider, model)): submit
    /// it if not yet, record the provider's counts, collect it once it ended; then queue the next
    /// look with a delay. Holds no lease between looks.
    PollNative {
        batch: BatchRef,
        group: u32,
    },
    /// One firing of a recurring schedule, for the fire time `at` (what EventBridge Scheduler
    /// puts in `<aws.scheduler.scheduled-time>`).
    FireSchedule {
        schedule: RecurringRef,
        at: Timestamp,
    },
}

/// Opaque handle of one receipt of a message; acknowledging needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub item: WorkItem,
    pub receipt: Receipt,
    /// 1 on first delivery.
    pub receive_count: u32,
    /// The trace of whoever queued it, when traces are exported.
    pub trace: Option<crate::trace_context::TraceContext>,
    /// A job's claim made in the same write as the receive (the embedded queue): the worker
    /// starts from it instead of claiming the job with a write of its own. `None`: not claimed.
    /// Boxed: a claimed job is large beside the rest of a delivery.
    pub claim: Option<Box<ReceivedClaim>>,
}

/// What a queue that claims on receive did: the claim of the delivered job under `lease`, as
/// [`JobStore::claim`] would have answered it at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedClaim {
    pub lease: Lease,
    pub at: Timestamp,
    pub outcome: ClaimOutcome,
}

/// At-least-once delivery with a visibility timeout, as SQS gives it.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError>;

    /// Up to `max` visible messages, each hidden for `visibility` from now.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError>;

    /// Deletes the message. A stale receipt is ignored.
    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError>;

    /// Hides the message for `visibility` from now (0 makes it visible at once).
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError>;
}

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
    /// results (`in_progress` and before `expires_at`).
    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
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

/// File records (the Files API). Bytes live in the [`BlobStore`]; a record is written only once
/// its bytes are stored, so every listed file can be read.
#[async_trait]
pub trait FileStore: Send + Sync {
    async fn create(&self, file: &FileRecord) -> Result<(), StoreError>;

    /// The tenant's file; `None` for another tenant's, an unknown, a deleted or an expired one.
    async fn get(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError>;

    async fn list(
        &self,
        tenant: &TenantId,
        query: &FileListQuery,
        now: Timestamp,
    ) -> Result<Page<FileRecord>, StoreError>;

    /// Removes the record; returns it (its blob is the caller's to delete), `None` if absent.
    async fn delete(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError>;

    /// Removes up to `limit` expired records and returns them, for their blobs to be deleted.
    /// Stores whose database expires items itself (DynamoDB TTL, with an S3 lifecycle rule for
    /// the bytes) return none.
    async fn purge_expired(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError>;
}

/// Uploads (the Uploads API) and their parts' records; the parts' bytes live in the
/// [`BlobStore`]. Every change is conditional on the upload's state, as
/// `uploads::decisions` states the rules: parts and completes only while `pending` and before
/// `expires_at`.
#[async_trait]
pub trait UploadStore: Send + Sync {
    async fn create(&self, upload: &Upload) -> Result<(), StoreError>;

    /// The tenant's upload, whatever its status; `None` for another tenant's, an unknown or a
    /// purged one.
    async fn get(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Upload>, StoreError>;

    /// Records a part whose bytes are stored, if its upload is `pending` and `now` is before its
    /// `expires_at`; false otherwise (the caller removes the bytes).
    async fn add_part(&self, part: &UploadPart, now: Timestamp) -> Result<bool, StoreError>;

    /// Every recorded part of the upload, in no particular order.
    async fn parts(&self, tenant: &TenantId, id: &UploadId) -> Result<Vec<UploadPart>, StoreError>;

    /// Sets the claim of a `pending` upload whose current claim names `previous` (none: no
    /// claim); false otherwise.
    async fn claim_completion(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        claim: &CompletionClaim,
        previous: Option<&FileId>,
    ) -> Result<bool, StoreError>;

    /// `pending -> completed` and the file's record, in one write, while the upload's claim
    /// names `file.id`; false otherwise. The file is visible exactly when the upload is
    /// completed, so a crash leaves no file or one whole one.
    async fn complete(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        file: &FileRecord,
    ) -> Result<bool, StoreError>;

    /// `pending -> cancelled` before `expires_at`; false otherwise.
    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Removes up to `limit` uploads that expired before `before` (any status) with their part
    /// records, and returns them for their parts' bytes to be deleted. Stores whose database
    /// expires items itself (DynamoDB TTL, with the bucket's lifecycle rule on `uploads/`)
    /// return none.
    async fn purge_expired(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<(Upload, Vec<UploadPart>)>, StoreError>;
}

/// A byte stream read back from the blob store.
pub type BlobStream = BoxStream<'static, Result<Bytes, StoreError>>;

/// Bytes by key: local files embedded, S3 on AWS. Writes are streamed, never held whole.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the stream under `key` (replacing nothing: keys are unique), returning its length.
    /// Nothing is left under `key` when the stream fails.
    async fn put_stream(&self, key: &str, body: UploadStream<'_>) -> Result<u64, UploadError>;

    async fn get(&self, key: &str) -> Result<BlobStream, StoreError>;

    /// Bytes `[start, end)` of the blob.
    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, StoreError>;

    /// A URL a client can fetch the bytes from directly for `ttl`, where the store has one.
    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError>;

    /// Deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
}

/// Delivers a work item to the work queue at a time further ahead than a queue delay reaches,
/// durably (EventBridge Scheduler on AWS). Identified by the item, so cancel needs nothing else.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Arranges one delivery of `item` at `at` or shortly after, never before.
    async fn schedule(&self, item: &WorkItem, at: Timestamp) -> Result<(), StoreError>;

    /// Drops the pending delivery of `item`; nothing to drop is not an error.
    async fn unschedule(&self, item: &WorkItem) -> Result<(), StoreError>;
}

/// Recurring schedules. Every change is a whole-state write conditional on the version read
/// (core's `recurring::decisions` decide it), so concurrent firings, pauses and deletes never
/// overwrite each other.
#[async_trait]
pub trait RecurringStore: Send + Sync {
    /// Writes a new schedule (version 1) with the request body its runs send. With a claim, the
    /// key is recorded in the same write (beside the job creates' keys, one namespace per
    /// tenant); a key that still holds leaves nothing written and answers `Replayed` with the
    /// id it names. Never `Created { triggered: true }`: a schedule is armed by its trigger.
    async fn create(
        &self,
        schedule: &Recurring,
        request: &Bytes,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError>;

    /// The tenant's schedule; `None` for another tenant's or an unknown one.
    async fn get(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Recurring>, StoreError>;

    /// The body each run sends.
    async fn request_body(&self, schedule: &RecurringRef) -> Result<Option<Bytes>, StoreError>;

    /// The tenant's schedules, newest first.
    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&JobId>,
    ) -> Result<Page<Recurring>, StoreError>;

    /// How many of the tenant's schedules are active or paused (the per-tenant cap).
    async fn count_live(&self, tenant: &TenantId) -> Result<usize, StoreError>;

    /// Replaces the schedule's state (status, next/last times, counters) with `next`'s and
    /// bumps its version, if the stored version is still `next.version`. False when another
    /// write came first.
    async fn update(&self, next: &Recurring) -> Result<bool, StoreError>;
}

/// Makes a recurring schedule fire: embedded, one delayed queue message for the next fire time
/// at a time; on AWS, one recurring EventBridge Scheduler schedule that fires by itself.
#[async_trait]
pub trait RecurringTrigger: Send + Sync {
    /// A new (or resumed) active schedule: arrange its firings from `next_run_at` on.
    async fn arm(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// A firing was handled and the schedule is still active: arrange the one after (a no-op
    /// where the trigger recurs by itself).
    async fn rearm(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// Paused: no firings until resumed (the definition is kept).
    async fn pause(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// Finished or cancelled: no more firings; nothing to remove is not an error.
    async fn disarm(&self, schedule: &Recurring) -> Result<(), StoreError>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes the key with this id or display prefix; false when none matched.
    async fn revoke(&self, id_or_prefix: &str, now: Timestamp) -> Result<bool, StoreError>;
    async fn is_empty(&self) -> Result<bool, StoreError>;
}

/// An answer the upstream gave with 2xx: the raw JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub body: String,
}

/// An upstream response relayed as it arrives (the synchronous path).
pub struct Relay {
    pub status: u16,
    /// Headers worth passing on: content type, retry hints, the provider's request id.
    pub headers: Vec<(String, String)>,
    pub body: BoxStream<'static, Result<Bytes, UpstreamError>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no provider routes model '{0}'")]
    NoRoute(String),
    #[error("upstream answered {status}")]
    Status {
        status: u16,
        /// The upstream's OpenAI-shaped error, when it sent one.
        error: Option<JobError>,
        retry_after: Option<Duration>,
        should_retry: Option<bool>,
    },
    #[error("upstream timed out")]
    Timeout,
    #[error("could not connect to the upstream")]
    Connect,
    #[error("upstream response was not valid: {0}")]
    InvalidResponse(String),
}

#[async_trait]
pub trait Upstream: Send + Sync {
    /// Whether some configured provider serves this model.
    fn routes(&self, model: &str) -> bool;

    /// The provider serving `model` and how it runs batch lines; `None` (the default) runs
    /// them at the gateway, at the standard tier.
    fn batch_route(&self, _model: &str) -> Option<crate::batches::modes::BatchRoute> {
        None
    }

    /// The models to list (see [`crate::models::listed_models`]). A provider whose own list
    /// cannot be read contributes its literal names only; none by default.
    async fn models(&self) -> Vec<crate::models::ListedModel> {
        Vec::new()
    }

    /// One non-streamed attempt at `endpoint`, bounded by `timeout`. Dropping the future aborts
    /// the request.
    async fn complete(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError>;

    /// Forwards a client's request and relays the answer as it streams in. Retries only a
    /// connection that failed before anything was sent.
    async fn relay(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
    ) -> Result<Relay, UpstreamError>;
}

/// A provider's own Files and Batch API (OpenAI's `/v1/files`, `/v1/batches`), for the lines a
/// `native` provider runs. Providers are named as configured; ids are the provider's.
#[async_trait]
pub trait ProviderBatches: Send + Sync {
    /// Uploads a batch input file (purpose `batch`); the provider's file id.
    async fn upload_batch_file(
        &self,
        provider: &str,
        filename: &str,
        body: Bytes,
    ) -> Result<String, UpstreamError>;

    /// Creates a provider batch over an uploaded input file (`completion_window: "24h"`).
    async fn create_batch(
        &self,
        provider: &str,
        request: &NewProviderBatch,
    ) -> Result<ProviderBatch, UpstreamError>;

    async fn retrieve_batch(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<ProviderBatch, UpstreamError>;

    /// The provider batch whose metadata holds `key = value`, looked up through the list
    /// (providers filter lists by nothing but a cursor), newest first, down to batches created
    /// at `created_since` (unix seconds): the one sought is never older.
    async fn find_batch(
        &self,
        provider: &str,
        key: &str,
        value: &str,
        created_since: u64,
    ) -> Result<Option<ProviderBatch>, UpstreamError>;

    async fn cancel_batch(&self, provider: &str, id: &str) -> Result<ProviderBatch, UpstreamError>;

    /// A provider file's bytes as they arrive.
    async fn file_content(
        &self,
        provider: &str,
        file_id: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, UpstreamError>>, UpstreamError>;

    /// Deletes a provider file; one already gone counts as deleted.
    async fn delete_file(&self, provider: &str, file_id: &str) -> Result<(), UpstreamError>;
}

/// Webhook endpoints, the event outbox and the delivery record. Terminal transitions record
/// their event themselves (the job and batch stores, in the same write); this port records the
/// events that follow no state change (tests, redeliveries) and everything delivery keeps.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// The tenant's endpoint; `None` for another tenant's or an unknown one.
    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>, StoreError>;

    /// The tenant's endpoints, newest first.
    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError>;

    /// Replaces the endpoint's mutable fields (secrets, status, failing streak); false when it
    /// is gone.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;

    /// False when there was none.
    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Records an event and triggers its delivery in one write (an event that follows no state
    /// change: a test, a redelivery). Recording an id twice keeps the first.
    async fn record_event(&self, event: &WebhookEvent) -> Result<(), StoreError>;

    async fn event(&self, event: &EventRef) -> Result<Option<WebhookEvent>, StoreError>;

    /// Where the event stands with each endpoint it was tried on.
    async fn delivery_states(&self, event: &EventRef) -> Result<Vec<DeliveryState>, StoreError>;

    /// Records one attempt (if any: a redelivery only resets the state) and the delivery state
    /// it led to, in one write.
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        attempt: Option<&Attempt>,
        state: &DeliveryState,
    ) -> Result<(), StoreError>;

    /// The endpoint's attempts, newest first.
    async fn attempts(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// Events recorded but whose delivery is not settled and not known to be waiting on a
    /// trigger, due before `before`: the reconciler re-triggers them. Stores whose outbox write
    /// also queues the trigger (SQLite) return none.
    async fn undelivered(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<EventRef>, StoreError>;

    /// Marks the event settled (every endpoint delivered or given up), so the reconciler stops
    /// looking at it.
    async fn settle_event(&self, event: &EventRef) -> Result<(), StoreError>;
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The receiver's status; `None` when no answer came.
    pub status: Option<u16>,
    /// From starting the attempt to the answer's first byte (or the failure).
    pub latency: Duration,
    /// Why no answer came, for the delivery list (never a secret).
    pub error: Option<String>,
    /// The answer's `Retry-After` header as sent (core's `webhooks::decisions` reads it).
    pub retry_after: Option<String>,
}

/// Sends one signed webhook request: resolves the host, refuses a forbidden address
/// ([`crate::webhooks::target`]), connects to the address it checked (no second resolution),
/// never follows a redirect, and gives up after the attempt timeout.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Resolves the URL's host and checks it and every address it resolves to (endpoint
    /// creation).
    async fn check_target(&self, url: &str, allow_private: bool) -> Result<(), TargetError>;

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        allow_private: bool,
    ) -> SendResult;
}

//! Jobs: the job store, and the leases, idempotency claims and outcomes its calls answer with.

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::{JobId, TenantId};
use crate::jobs::{Finish, Job, JobError, JobKind, JobRef, NewJob};
use crate::list::{ListQuery, Page};
use crate::responses::events::RecordedEvent;
use crate::usage::counters::{Day, UsageCount};

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

//! Jobs in SQLite: the `JobStore` port. A job row is also its own queue entry (see `queue`), so
//! storing a job and queueing it cannot drift apart. Every terminal write also records its
//! webhook event (the outbox) in the same transaction.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::jobs::decisions::{self, CancelDecision};
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::list::{ListQuery, Page};
use prism_core::ports::{
    CancelOutcome, ClaimOutcome, CreateOutcome, IdempotencyClaim, JobStore, Lease,
};
use prism_core::responses::events::RecordedEvent;
use prism_core::trace_context::TraceContext;
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::{Job, JobError, JobId, JobKind, JobStatus, StoreError, TenantId, Timestamp};
use rusqlite::{OptionalExtension, params};
use tokio::sync::Notify;

use crate::db::Database;
use crate::queue::{SettledByFinish, SqliteWorkQueue};

mod rows;

use rows::{
    JOB_COLUMNS, corrupt, error_json, job_from_row, load_live, record_job_event, status_of,
};
pub(crate) use rows::{claim_in, held_by, job_ref, request_in, unfinished_list};

/// The `JobStore` port over SQLite. `wake` is the queue's: a created job is queued at once.
#[derive(Clone)]
pub struct SqliteJobStore {
    db: Database,
    wake: Arc<Notify>,
    settled: SettledByFinish,
}

impl SqliteJobStore {
    pub fn new(db: Database, queue: &SqliteWorkQueue) -> Self {
        Self {
            db,
            wake: queue.wake(),
            settled: queue.settled_by_finish(),
        }
    }

    /// Called by the one process that holds the data-directory lock, at start and at the end of
    /// a shutdown: every lease and in-flight delivery then belongs to no live worker, so they
    /// are released and made visible at once instead of waiting out their timeouts.
    pub async fn reclaim_all_leases(&self, now: Timestamp) -> Result<usize, StoreError> {
        self.db
            .write(move |conn| {
                let leases = conn.execute(
                    "UPDATE jobs SET lease_token = NULL, lease_expires_at = NULL \
                     WHERE status = ?1 AND lease_token IS NOT NULL",
                    params![JobStatus::Running.as_str()],
                )?;
                // A batch stage cut off by the crash did nothing wrong: its delivery does not count
                // toward dead-lettering (a long chunk may live through several restarts).
                conn.execute(
                    "UPDATE work_items SET visible_at = ?1, receives = 0 \
                     WHERE receipt IS NOT NULL AND (visible_at > ?1 OR receives > 0)",
                    params![now.0],
                )?;
                // Only deliveries in flight: a scheduled job not yet received keeps its due time.
                conn.execute(
                    "UPDATE jobs SET queue_visible_at = ?1 \
                     WHERE queue_visible_at IS NOT NULL AND queue_visible_at > ?1 \
                       AND queue_receipt IS NOT NULL",
                    params![now.0],
                )?;
                Ok(leases)
            })
            .await
    }
}

#[async_trait]
impl JobStore for SqliteJobStore {
    async fn create(
        &self,
        job: &NewJob,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let job = job.clone();
        let claim = idempotency.cloned();
        let bytes = job.request.len();
        let trace = prism_core::trace_context::current();
        let outcome = self
            .db
            .write_sized(bytes, move |conn| {
                if let Some(claim) = &claim {
                    let existing: Option<(String, String, i64)> = conn
                        .prepare_cached(
                            "SELECT job_id, body_hash, expires_at FROM idempotency_keys \
                             WHERE tenant = ?1 AND key = ?2",
                        )?
                        .query_row(params![job.tenant.as_str(), claim.key], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()?;
                    if let Some((job_id, hash, expires_at)) = existing
                        && decisions::idempotency_key_holds(Timestamp(expires_at), job.created_at)
                    {
                        return Ok(CreateOutcome::Replayed {
                            job_id: JobId::parse(&job_id).ok_or_else(|| corrupt("job_id"))?,
                            same_body: hash == claim.body_hash,
                        });
                    }
                    conn.prepare_cached(
                        "INSERT OR REPLACE INTO idempotency_keys (tenant, key, body_hash, job_id, expires_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                    )?
                    .execute(params![
                        job.tenant.as_str(),
                        claim.key,
                        claim.body_hash,
                        job.id.as_str(),
                        claim.expires_at.0
                    ])?;
                }
                // Visible in the queue from the same write (a scheduled job from its due time):
                // storing and queueing cannot drift apart, and a submit costs one commit.
                let metadata = job
                    .metadata
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                // A run of a recurring schedule has an id derived from its firing: one already
                // stored is this same firing's, left as it is.
                let inserted = conn.prepare_cached(
                    "INSERT INTO jobs (id, tenant, kind, status, model, request, created_at, \
                       scheduled_at, metadata, queue_visible_at, scheduled_job_id, endpoint, \
                       trace_context) \
                     VALUES (?1, ?2, ?3, ?9, ?4, ?5, ?6, ?7, ?8, MAX(?6, COALESCE(?7, ?6)), ?10, ?11, ?12) \
                     ON CONFLICT(id) DO NOTHING",
                )?
                .execute(params![
                    job.id.as_str(),
                    job.tenant.as_str(),
                    job.kind.as_str(),
                    job.model,
                    job.request.as_ref(),
                    job.created_at.0,
                    job.scheduled_at.map(|t| t.0),
                    metadata,
                    JobStatus::Pending.as_str(),
                    job.scheduled_job_id.as_ref().map(JobId::as_str),
                    job.endpoint.path(),
                    trace.as_ref().map(TraceContext::as_str)
                ])?;
                Ok(CreateOutcome::Created {
                    triggered: inserted == 1,
                })
            })
            .await?;
        if matches!(outcome, CreateOutcome::Created { triggered: true }) {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        let (id, tenant) = (id.clone(), tenant.clone());
        self.db
            .read(move |conn| load_live(conn, tenant.as_str(), id.as_str(), now.0))
            .await
    }

    async fn request_body(&self, job: &JobRef) -> Result<Option<Bytes>, StoreError> {
        let job = job.clone();
        self.db
            .read(move |conn| request_in(conn, &job, i64::MAX))
            .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        query: &ListQuery,
        now: Timestamp,
    ) -> Result<Page<Job>, StoreError> {
        let (tenant, query) = (tenant.clone(), query.clone());
        self.db
            .read(move |conn| {
                // The cursor and filter are optional; NULL parameters switch them off. The
                // expiry test is `Job::is_live` in SQL, so a page holds `limit` kept jobs.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs \
                     WHERE tenant = ?1 AND kind = ?2 \
                       AND (expires_at IS NULL OR expires_at > ?3) \
                       AND (?4 IS NULL OR id < ?4) \
                       AND (?5 IS NULL OR status = ?5) \
                       AND (?7 IS NULL OR scheduled_job_id = ?7) \
                     ORDER BY id DESC LIMIT ?6"
                ))?;
                let fetch = i64::try_from(query.limit + 1).unwrap_or(i64::MAX);
                let mut items = stmt
                    .query_map(
                        params![
                            tenant.as_str(),
                            kind.as_str(),
                            now.0,
                            query.after.as_ref().map(JobId::as_str),
                            query.status.map(JobStatus::as_str),
                            fetch,
                            query.scheduled_job_id.as_ref().map(JobId::as_str)
                        ],
                        job_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = items.len() > query.limit;
                items.truncate(query.limit);
                Ok(Page { items, has_more })
            })
            .await
    }

    async fn claim(
        &self,
        job: &JobRef,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let (target, lease) = (job.clone(), lease.clone());
        self.db
            .write(move |conn| claim_in(conn, &target, &lease, now))
            .await
    }

    async fn begin_attempt(
        &self,
        job: &JobRef,
        token: &str,
        attempt: u32,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, token) = (job.id.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                if !held_by(conn, id.as_str(), &token)? {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?2, attempts = ?3 WHERE id = ?1",
                )?
                .execute(params![id.as_str(), lease_until.0, attempt])
                .map(|n| n == 1)
            })
            .await
    }

    async fn release(
        &self,
        job: &JobRef,
        token: &str,
        retry_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, token) = (job.id.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                if !held_by(conn, id.as_str(), &token)? {
                    return Ok(false);
                }
                conn.prepare_cached(
                    "UPDATE jobs SET lease_token = NULL, lease_expires_at = ?2 WHERE id = ?1",
                )?
                .execute(params![id.as_str(), retry_at.0])
                .map(|n| n == 1)
            })
            .await
    }

    async fn finish(
        &self,
        job: &JobRef,
        token: &str,
        outcome: &Finish,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, token, tenant) = (job.id.clone(), token.to_owned(), job.tenant.clone());
        let (status, result, error) = match outcome {
            Finish::Completed { result, .. } => (JobStatus::Completed, Some(result.clone()), None),
            Finish::Failed { error } => (JobStatus::Failed, None, Some(error.clone())),
        };
        let counted: Vec<_> = match outcome {
            Finish::Completed {
                counted: Some(count),
                ..
            } => vec![count.clone()],
            _ => Vec::new(),
        };
        let bytes = result.as_ref().map_or(0, |r| r.len());
        let settled_id = id.as_str().to_owned();
        let (kept, queued_event) = self
            .db
            .write_sized(bytes, move |conn| {
                if !held_by(conn, id.as_str(), &token)? {
                    return Ok((false, false));
                }
                let error = error.as_ref().map(error_json).transpose()?;
                // A terminal job's queue message is redundant (any delivery of it is
                // acknowledged unrun), so the finishing write drops it too: the worker's
                // acknowledgement then costs no write of its own. The job's event goes into the
                // outbox in the same write.
                let written = conn
                    .prepare_cached(
                        "UPDATE jobs SET status = ?2, result = ?3, error = ?4, completed_at = ?5, \
                         expires_at = ?6, lease_token = NULL, lease_expires_at = NULL, \
                         queue_visible_at = NULL, queue_receipt = NULL, queue_receives = 0 \
                         WHERE id = ?1",
                    )?
                    .execute(params![
                        id.as_str(),
                        status.as_str(),
                        result,
                        error,
                        now.0,
                        expires_at.0
                    ])?;
                if written != 1 {
                    return Ok((false, false));
                }
                let queued_event = record_job_event(conn, &tenant, &id, status, now)?;
                crate::usage::add(conn, &tenant, &counted)?;
                Ok((true, queued_event))
            })
            .await?;
        if kept {
            self.settled.insert(&settled_id);
        }
        // Only a queued outbox row is news to the dispatcher: waking it for every finish made
        // an idle dispatcher run a receive (a write) that found nothing.
        if queued_event {
            self.wake.notify_one();
        }
        Ok(kept)
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        crate::usage::read(&self.db, tenant, from, to, &UsageKind::OF_JOBS).await
    }

    async fn still_holds(&self, job: &JobRef, token: &str) -> Result<bool, StoreError> {
        let (id, token) = (job.id.clone(), token.to_owned());
        self.db
            .read(move |conn| held_by(conn, id.as_str(), &token))
            .await
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        let outcome = self
            .db
            .write(move |conn| {
                let job = load_live(conn, tenant.as_str(), id.as_str(), now.0)?;
                match decisions::cancel_outcome(job, now, expires_at) {
                    CancelDecision::Answer(outcome) => Ok(outcome),
                    CancelDecision::Cancel(cancelled) => {
                        // A pending job's queue entry is dropped with it; a running one's
                        // delivery is acknowledged by its worker once it sees the cancel.
                        conn.prepare_cached(
                            "UPDATE jobs SET status = ?2, completed_at = ?3, expires_at = ?4, \
                             lease_token = NULL, lease_expires_at = NULL, \
                             queue_visible_at = CASE WHEN status = ?5 THEN NULL ELSE queue_visible_at END \
                             WHERE id = ?1",
                        )?
                        .execute(params![
                            id.as_str(),
                            cancelled.status.as_str(),
                            cancelled.completed_at.map(|t| t.0),
                            cancelled.expires_at.map(|t| t.0),
                            JobStatus::Pending.as_str()
                        ])?;
                        record_job_event(conn, &tenant, &id, JobStatus::Cancelled, now)?;
                        Ok(CancelOutcome::Cancelled(cancelled))
                    }
                }
            })
            .await?;
        if matches!(outcome, CancelOutcome::Cancelled(_)) {
            self.wake.notify_one();
        }
        Ok(outcome)
    }

    async fn fail_unfinished(
        &self,
        job: &JobRef,
        error: &JobError,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, error, tenant) = (job.id.clone(), error.clone(), job.tenant.clone());
        let failed = self
            .db
            .write(move |conn| {
                let unfinished = status_of(conn, id.as_str())?.is_some_and(|s| !s.is_terminal());
                if !unfinished {
                    return Ok(false);
                }
                let written = conn
                    .prepare_cached(
                        "UPDATE jobs SET status = ?2, error = ?3, completed_at = ?4, expires_at = ?5, \
                     lease_token = NULL, lease_expires_at = NULL WHERE id = ?1",
                    )?
                    .execute(params![
                        id.as_str(),
                        JobStatus::Failed.as_str(),
                        error_json(&error)?,
                        now.0,
                        expires_at.0
                    ])?;
                if written == 1 {
                    record_job_event(conn, &tenant, &id, JobStatus::Failed, now)?;
                }
                Ok(written == 1)
            })
            .await?;
        if failed {
            self.wake.notify_one();
        }
        Ok(failed)
    }

    async fn stranded(&self, before: Timestamp, limit: usize) -> Result<Vec<JobRef>, StoreError> {
        self.db
            .read(move |conn| {
                // The row is its own queue entry, so for a pending job "no trigger waiting" is
                // known exactly. A running job's lapsed lease is stranded whatever its message
                // does, as on SQS: a message in flight may be kept hidden by the heartbeat of a
                // worker that hangs, and the lease, which only the work renews, is the truth;
                // the re-enqueue makes the row visible again and the next receive takes it over.
                // The times are `decisions::quiet_since` in SQL (the contract suite's stranded
                // cases hold it to the same answers), so the partial index serves the query.
                // The statuses are written into the text, not bound, so SQLite can prove the query
                // inside the partial index on unfinished jobs and use it.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT id, tenant FROM jobs WHERE status IN {unfinished} \
                     AND ((status = '{pending}' AND queue_visible_at IS NULL \
                           AND MAX(created_at, COALESCE(scheduled_at, 0)) < ?1) \
                       OR (status = '{running}' AND COALESCE(lease_expires_at, 0) < ?1)) \
                     LIMIT ?2",
                    unfinished = unfinished_list(),
                    pending = JobStatus::Pending.as_str(),
                    running = JobStatus::Running.as_str(),
                ))?;
                let ids = stmt
                    .query_map(
                        params![before.0, i64::try_from(limit).unwrap_or(i64::MAX)],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(ids
                    .iter()
                    .filter_map(|(id, tenant)| job_ref(id, tenant))
                    .collect())
            })
            .await
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        self.db
            .write(move |conn| {
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                crate::response_events::purge_for_expired_jobs(conn, now.0, limit)?;
                let jobs = conn.execute(
                    "DELETE FROM jobs WHERE id IN \
                     (SELECT id FROM jobs WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                    params![now.0, limit],
                )?;
                conn.execute(
                    "DELETE FROM idempotency_keys WHERE rowid IN \
                     (SELECT rowid FROM idempotency_keys WHERE expires_at <= ?1 LIMIT ?2)",
                    params![now.0, limit],
                )?;
                crate::usage::purge(conn, now, limit)?;
                Ok(u64::try_from(jobs).unwrap_or(0))
            })
            .await
    }

    async fn append_events(
        &self,
        job: &JobRef,
        token: &str,
        events: &[RecordedEvent],
    ) -> Result<bool, StoreError> {
        crate::response_events::append(&self.db, job, token, events).await
    }

    async fn events_after(
        &self,
        job: &JobRef,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        crate::response_events::after(&self.db, job, after, limit).await
    }
}

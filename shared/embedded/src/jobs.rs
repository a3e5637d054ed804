//! Jobs in SQLite: the `JobStore` port, and the `WorkQueue` port kept on the same rows (a job row
//! is its own queue entry, so storing a job and queueing it cannot drift apart).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::batches::BatchRef;
use prism_core::jobs::decisions::{self, CancelDecision, ClaimDecision};
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::list::{ListQuery, Page};
use prism_core::ports::{
    CancelOutcome, ClaimOutcome, CreateOutcome, Delivery, IdempotencyClaim, JobStore, Lease,
    Receipt, WorkItem, WorkQueue,
};
use prism_core::{
    BatchId, Clock, Job, JobError, JobId, JobKind, JobStatus, Stage, StoreError, TenantId,
    Timestamp,
};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::Notify;

use crate::db::Database;

const JOB_COLUMNS: &str = "id, tenant, kind, status, model, created_at, started_at, completed_at, \
                           expires_at, result, error, attempts, scheduled_at, metadata";

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let status: String = row.get(3)?;
    let error: Option<String> = row.get(10)?;
    let metadata: Option<String> = row.get(13)?;
    Ok(Job {
        id: JobId::parse(&id).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        model: row.get(4)?,
        created_at: Timestamp(row.get(5)?),
        started_at: row.get::<_, Option<i64>>(6)?.map(Timestamp),
        completed_at: row.get::<_, Option<i64>>(7)?.map(Timestamp),
        expires_at: row.get::<_, Option<i64>>(8)?.map(Timestamp),
        result: row.get(9)?,
        error: error
            .map(|e| serde_json::from_str::<JobError>(&e))
            .transpose()
            .map_err(|_| corrupt("error"))?,
        attempts: row.get(11)?,
        scheduled_at: row.get::<_, Option<i64>>(12)?.map(Timestamp),
        metadata: metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|_| corrupt("metadata"))?,
    })
}

/// Reads one of a tenant's jobs that has not outlived its retention.
fn load_live(conn: &Connection, tenant: &str, id: &str, now: i64) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs \
         WHERE id = ?1 AND tenant = ?2 AND (expires_at IS NULL OR expires_at > ?3)"
    ))?
    .query_row(params![id, tenant, now], job_from_row)
    .optional()
}

fn job_ref(id: &str, tenant: &str) -> Option<JobRef> {
    Some(JobRef {
        id: JobId::parse(id)?,
        tenant: TenantId::parse(tenant)?,
    })
}

fn error_json(error: &JobError) -> rusqlite::Result<String> {
    serde_json::to_string(error).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The `JobStore` port over SQLite. `wake` is the queue's: a created job is queued at once.
#[derive(Clone)]
pub struct SqliteJobStore {
    db: Database,
    wake: Arc<Notify>,
}

impl SqliteJobStore {
    pub fn new(db: Database, queue: &SqliteWorkQueue) -> Self {
        Self {
            db,
            wake: queue.wake(),
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
                     WHERE status = 'running' AND lease_token IS NOT NULL",
                    [],
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
        let outcome = self
            .db
            .write(move |conn| {
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
                        && expires_at > job.created_at.0
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
                conn.prepare_cached(
                    "INSERT INTO jobs (id, tenant, kind, status, model, request, created_at, \
                       scheduled_at, metadata, queue_visible_at) \
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?5, ?6, ?7, ?8, MAX(?6, COALESCE(?7, ?6)))",
                )?
                .execute(params![
                    job.id.as_str(),
                    job.tenant.as_str(),
                    job.kind.as_str(),
                    job.model,
                    job.request.as_ref(),
                    job.created_at.0,
                    job.scheduled_at.map(|t| t.0),
                    metadata
                ])?;
                Ok(CreateOutcome::Created { triggered: true })
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
            .read(move |conn| {
                conn.prepare_cached("SELECT request FROM jobs WHERE id = ?1 AND tenant = ?2")?
                    .query_row(params![job.id.as_str(), job.tenant.as_str()], |r| {
                        r.get::<_, Vec<u8>>(0)
                    })
                    .optional()
                    .map(|b| b.map(Bytes::from))
            })
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
                // The cursor and filter are optional; NULL parameters switch them off.
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {JOB_COLUMNS} FROM jobs \
                     WHERE tenant = ?1 AND kind = ?2 \
                       AND (expires_at IS NULL OR expires_at > ?3) \
                       AND (?4 IS NULL OR id < ?4) \
                       AND (?5 IS NULL OR status = ?5) \
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
                            fetch
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
            .write(move |conn| {
                let id = &target.id;
                let job = load_live(conn, target.tenant.as_str(), id.as_str(), now.0)?;
                // A released lease has no token and holds nothing.
                let held_until: Option<i64> = conn
                    .prepare_cached(
                        "SELECT lease_expires_at FROM jobs WHERE id = ?1 AND lease_token IS NOT NULL",
                    )?
                    .query_row(params![id.as_str()], |r| r.get(0))
                    .optional()?
                    .flatten();
                let claimed = match decisions::claim(job, held_until.map(Timestamp), now) {
                    ClaimDecision::Take(claimed) => claimed,
                    ClaimDecision::Refuse(refusal) => return Ok(refusal),
                };
                conn.prepare_cached(
                    "UPDATE jobs SET status = 'running', lease_token = ?2, lease_expires_at = ?3, \
                     started_at = COALESCE(started_at, ?4), attempts = attempts + 1 WHERE id = ?1",
                )?
                .execute(params![id.as_str(), lease.token, lease.expires_at.0, now.0])?;
                Ok(ClaimOutcome::Claimed(claimed))
            })
            .await
    }

    async fn begin_attempt(
        &self,
        job: &JobRef,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, token) = (job.id.clone(), token.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET lease_expires_at = ?3, attempts = attempts + 1 \
                     WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                )?
                .execute(params![id.as_str(), token, lease_until.0])
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
                conn.prepare_cached(
                    "UPDATE jobs SET lease_token = NULL, lease_expires_at = ?3 \
                     WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                )?
                .execute(params![id.as_str(), token, retry_at.0])
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
        let (id, token) = (job.id.clone(), token.to_owned());
        let (status, result, error) = match outcome {
            Finish::Completed { result } => (JobStatus::Completed, Some(result.clone()), None),
            Finish::Failed { error } => (JobStatus::Failed, None, Some(error.clone())),
        };
        self.db
            .write(move |conn| {
                let error = error.as_ref().map(error_json).transpose()?;
                conn.prepare_cached(
                    "UPDATE jobs SET status = ?3, result = ?4, error = ?5, completed_at = ?6, \
                     expires_at = ?7, lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                )?
                .execute(params![
                    id.as_str(),
                    token,
                    status.as_str(),
                    result,
                    error,
                    now.0,
                    expires_at.0
                ])
                .map(|n| n == 1)
            })
            .await
    }

    async fn still_holds(&self, job: &JobRef, token: &str) -> Result<bool, StoreError> {
        let (id, token) = (job.id.clone(), token.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT 1 FROM jobs WHERE id = ?1 AND status = 'running' AND lease_token = ?2",
                )?
                .query_row(params![id.as_str(), token], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
            })
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
        self.db
            .write(move |conn| {
                let job = load_live(conn, tenant.as_str(), id.as_str(), now.0)?;
                match decisions::cancel_outcome(job, now, expires_at) {
                    CancelDecision::Answer(outcome) => Ok(outcome),
                    CancelDecision::Cancel(cancelled) => {
                        // A pending job's queue entry is dropped with it; a running one's
                        // delivery is acknowledged by its worker once it sees the cancel.
                        conn.prepare_cached(
                            "UPDATE jobs SET status = 'cancelled', completed_at = ?2, expires_at = ?3, \
                             lease_token = NULL, lease_expires_at = NULL, \
                             queue_visible_at = CASE WHEN status = 'pending' THEN NULL ELSE queue_visible_at END \
                             WHERE id = ?1",
                        )?
                        .execute(params![id.as_str(), now.0, expires_at.0])?;
                        Ok(CancelOutcome::Cancelled(cancelled))
                    }
                }
            })
            .await
    }

    async fn fail_unfinished(
        &self,
        job: &JobRef,
        error: &JobError,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let (id, error) = (job.id.clone(), error.clone());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET status = 'failed', error = ?2, completed_at = ?3, expires_at = ?4, \
                     lease_token = NULL, lease_expires_at = NULL \
                     WHERE id = ?1 AND status IN ('pending', 'running')",
                )?
                .execute(params![id.as_str(), error_json(&error)?, now.0, expires_at.0])
                .map(|n| n == 1)
            })
            .await
    }

    async fn stranded(&self, before: Timestamp, limit: usize) -> Result<Vec<JobRef>, StoreError> {
        self.db
            .read(move |conn| {
                // The row is its own queue entry, so "no trigger waiting" is known exactly.
                let mut stmt = conn.prepare_cached(
                    "SELECT id, tenant FROM jobs WHERE status IN ('pending', 'running') \
                     AND queue_visible_at IS NULL \
                     AND ((status = 'pending' AND MAX(created_at, COALESCE(scheduled_at, 0)) < ?1) \
                       OR (status = 'running' AND COALESCE(lease_expires_at, 0) < ?1)) \
                     LIMIT ?2",
                )?;
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
                Ok(u64::try_from(jobs).unwrap_or(0))
            })
            .await
    }
}

/// The `WorkQueue` port over the same rows. Wakes the in-process dispatcher on every enqueue, so
/// workers wait on a notification instead of polling.
#[derive(Clone)]
pub struct SqliteWorkQueue {
    db: Database,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl SqliteWorkQueue {
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Signalled whenever a message may have become visible.
    pub fn wake(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// When the next waiting message becomes visible, if any is waiting.
    pub async fn next_visible_at(&self) -> Result<Option<Timestamp>, StoreError> {
        self.db
            .read(|conn| {
                let jobs: Option<i64> = conn
                    .prepare_cached(
                        "SELECT MIN(queue_visible_at) FROM jobs WHERE queue_visible_at IS NOT NULL",
                    )?
                    .query_row([], |r| r.get(0))?;
                let items: Option<i64> = conn
                    .prepare_cached("SELECT MIN(visible_at) FROM work_items")?
                    .query_row([], |r| r.get(0))?;
                Ok(jobs.into_iter().chain(items).min().map(Timestamp))
            })
            .await
    }
}

impl SqliteWorkQueue {
    /// Drops the item's message if it is waiting (not in flight): what deleting a schedule is on
    /// a queue that carries delays itself.
    pub async fn drop_waiting(&self, item: &WorkItem) -> Result<(), StoreError> {
        let item = item.clone();
        self.db
            .write(move |conn| match &item {
                WorkItem::Job(job) => conn
                    .prepare_cached(
                        "UPDATE jobs SET queue_visible_at = NULL, queue_receives = 0 \
                         WHERE id = ?1 AND queue_receipt IS NULL",
                    )?
                    .execute(params![job.id.as_str()]),
                other => conn
                    .prepare_cached("DELETE FROM work_items WHERE key = ?1 AND receipt IS NULL")?
                    .execute(params![other.key()]),
            })
            .await
            .map(|_| ())
    }
}

fn split_receipt(receipt: &Receipt) -> Option<(&str, &str)> {
    receipt.0.split_once(':')
}

/// Receipts of work items are `w:<key>:<token>`; job ids never start with `w:`.
fn split_work_receipt(receipt: &Receipt) -> Option<(&str, &str)> {
    receipt.0.strip_prefix("w:")?.rsplit_once(':')
}

/// One row per distinct batch-stage item, its `kind` the stage's name: a second enqueue of a
/// waiting item keeps the earlier time; one of an item in flight makes a new message (the
/// in-flight receipt goes stale, as in SQS a second message is independent of the first).
fn enqueue_work_item(conn: &Connection, item: &WorkItem, visible_at: i64) -> rusqlite::Result<()> {
    let (batch, chunk) = match item {
        WorkItem::PlanBatch(b) | WorkItem::FinalizeBatch(b) => (b, None),
        WorkItem::RunChunk { batch, chunk } => (batch, Some(*chunk)),
        WorkItem::Job(_) => return Ok(()),
    };
    let kind = item.stage().name();
    conn.prepare_cached(
        "INSERT INTO work_items (key, kind, tenant, batch_id, chunk, visible_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT(key) DO UPDATE SET \
           visible_at = CASE WHEN receipt IS NOT NULL OR visible_at > excluded.visible_at \
             THEN excluded.visible_at ELSE visible_at END, \
           receipt = NULL, receives = 0",
    )?
    .execute(params![
        item.key(),
        kind,
        batch.tenant.as_str(),
        batch.id.as_str(),
        chunk,
        visible_at
    ])
    .map(|_| ())
}

fn work_item_from(
    kind: &str,
    tenant: &str,
    batch_id: &str,
    chunk: Option<u32>,
) -> Option<WorkItem> {
    let batch = BatchRef {
        tenant: TenantId::parse(tenant)?,
        id: BatchId::parse(batch_id)?,
    };
    WorkItem::of_batch(Stage::parse(kind)?, batch, chunk)
}

fn receive_work_items(
    conn: &Connection,
    now: Timestamp,
    hidden_until: i64,
    max: usize,
    rng: &mut impl Rng,
) -> rusqlite::Result<Vec<Delivery>> {
    let rows = conn
        .prepare_cached(
            "SELECT key, kind, tenant, batch_id, chunk FROM work_items WHERE visible_at <= ?1 \
             ORDER BY visible_at LIMIT ?2",
        )?
        .query_map(
            params![now.0, i64::try_from(max).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<u32>>(4)?,
                ))
            },
        )?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut hide = conn.prepare_cached(
        "UPDATE work_items SET visible_at = ?2, receipt = ?3, receives = receives + 1 \
         WHERE key = ?1 RETURNING receives",
    )?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for (key, kind, tenant, batch_id, chunk) in rows {
        let Some(item) = work_item_from(&kind, &tenant, &batch_id, chunk) else {
            conn.prepare_cached("DELETE FROM work_items WHERE key = ?1")?
                .execute(params![key])?;
            continue;
        };
        let receipt = hex::encode(rng.random::<[u8; 8]>());
        let receives: u32 = hide.query_row(params![key, hidden_until, receipt], |r| r.get(0))?;
        deliveries.push(Delivery {
            item,
            receipt: Receipt(format!("w:{key}:{receipt}")),
            receive_count: receives,
        });
    }
    Ok(deliveries)
}

#[async_trait]
impl WorkQueue for SqliteWorkQueue {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        let visible_at = self.clock.now().plus(delay).0;
        let item = item.clone();
        self.db
            .write(move |conn| match &item {
                // Like a second SQS message: never later than a message already waiting.
                WorkItem::Job(job) => conn
                    .prepare_cached(
                        "UPDATE jobs SET queue_visible_at = \
                           CASE WHEN queue_visible_at IS NULL OR queue_visible_at > ?2 THEN ?2 \
                           ELSE queue_visible_at END \
                         WHERE id = ?1 AND status IN ('pending', 'running')",
                    )?
                    .execute(params![job.id.as_str(), visible_at])
                    .map(|_| ()),
                other => enqueue_work_item(conn, other, visible_at),
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = self.clock.now();
        let hidden_until = now.plus(visibility).0;
        self.db
            .write(move |conn| {
                let ids = conn
                    .prepare_cached(
                        "SELECT id, tenant FROM jobs WHERE queue_visible_at IS NOT NULL AND queue_visible_at <= ?1 \
                         ORDER BY queue_visible_at LIMIT ?2",
                    )?
                    .query_map(
                        params![now.0, i64::try_from(max).unwrap_or(i64::MAX)],
                        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut stmt = conn.prepare_cached(
                    "UPDATE jobs SET queue_visible_at = ?2, queue_receipt = ?3, \
                     queue_receives = queue_receives + 1 WHERE id = ?1 RETURNING queue_receives",
                )?;
                let mut rng = rand::rng();
                let mut deliveries = Vec::with_capacity(ids.len());
                for (id, tenant) in ids {
                    let receipt = hex::encode(rng.random::<[u8; 8]>());
                    let receives: u32 =
                        stmt.query_row(params![id, hidden_until, receipt], |r| r.get(0))?;
                    let Some(job) = job_ref(&id, &tenant) else {
                        continue;
                    };
                    deliveries.push(Delivery {
                        item: WorkItem::Job(job),
                        receipt: Receipt(format!("{id}:{receipt}")),
                        receive_count: receives,
                    });
                }
                // Jobs first: interactive work goes ahead of batch stages.
                let room = max.saturating_sub(deliveries.len());
                if room > 0 {
                    deliveries.extend(receive_work_items(conn, now, hidden_until, room, &mut rng)?);
                }
                Ok(deliveries)
            })
            .await
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError> {
        if let Some((key, token)) = split_work_receipt(receipt) {
            let (key, token) = (key.to_owned(), token.to_owned());
            return self
                .db
                .write(move |conn| {
                    conn.prepare_cached("DELETE FROM work_items WHERE key = ?1 AND receipt = ?2")?
                        .execute(params![key, token])
                        .map(|_| ())
                })
                .await;
        }
        let Some((id, token)) = split_receipt(receipt) else {
            return Ok(());
        };
        let (id, token) = (id.to_owned(), token.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET queue_visible_at = NULL, queue_receipt = NULL, queue_receives = 0 \
                     WHERE id = ?1 AND queue_receipt = ?2",
                )?
                .execute(params![id, token])
            })
            .await
            .map(|_| ())
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError> {
        let visible_at = self.clock.now().plus(visibility).0;
        if let Some((key, token)) = split_work_receipt(receipt) {
            let (key, token) = (key.to_owned(), token.to_owned());
            self.db
                .write(move |conn| {
                    conn.prepare_cached(
                        "UPDATE work_items SET visible_at = ?3 WHERE key = ?1 AND receipt = ?2",
                    )?
                    .execute(params![key, token, visible_at])
                })
                .await?;
            if visibility.is_zero() {
                self.wake.notify_one();
            }
            return Ok(());
        }
        let Some((id, token)) = split_receipt(receipt) else {
            return Ok(());
        };
        let (id, token) = (id.to_owned(), token.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE jobs SET queue_visible_at = ?3 WHERE id = ?1 AND queue_receipt = ?2",
                )?
                .execute(params![id, token, visible_at])
            })
            .await?;
        if visibility.is_zero() {
            self.wake.notify_one();
        }
        Ok(())
    }
}

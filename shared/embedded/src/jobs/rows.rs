//! A job's row: its columns and how they read back, and the statements on one row that the job
//! store and the claiming receive (`queue`) both run inside their own transactions: the claim,
//! the lease-holder check, the request body, the outbox event of a terminal write.

use bytes::Bytes;
use prism_core::jobs::JobRef;
use prism_core::jobs::decisions::{self, ClaimDecision};
use prism_core::ports::{ClaimOutcome, Lease};
use prism_core::webhooks::{EventKind, WebhookEvent};
use prism_core::{ApiEndpoint, Job, JobError, JobId, JobKind, JobStatus, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::webhooks::record_outbox_event;

pub(super) const JOB_COLUMNS: &str = "id, tenant, kind, status, model, created_at, started_at, completed_at, \
                           expires_at, result, error, attempts, scheduled_at, metadata, \
                           scheduled_job_id, endpoint";

pub(super) fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

pub(super) fn job_from_row(row: &Row<'_>) -> rusqlite::Result<Job> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let kind: String = row.get(2)?;
    let status: String = row.get(3)?;
    let error: Option<String> = row.get(10)?;
    let metadata: Option<String> = row.get(13)?;
    let scheduled_job_id: Option<String> = row.get(14)?;
    let endpoint: Option<String> = row.get(15)?;
    Ok(Job {
        id: JobId::parse(&id).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        kind: JobKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
        status: JobStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        // NULL: a job stored before jobs named their endpoint.
        endpoint: match endpoint {
            None => ApiEndpoint::ChatCompletions,
            Some(path) => ApiEndpoint::from_path(&path).ok_or_else(|| corrupt("endpoint"))?,
        },
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
        scheduled_job_id: scheduled_job_id
            .map(|id| JobId::parse(&id).ok_or_else(|| corrupt("scheduled_job_id")))
            .transpose()?,
        metadata: metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|_| corrupt("metadata"))?,
    })
}

/// Reads one of a tenant's jobs that core still counts as kept (`Job::is_live`): one past its
/// retention reads as unknown until the purge deletes it.
pub(super) fn load_live(
    conn: &Connection,
    tenant: &str,
    id: &str,
    now: i64,
) -> rusqlite::Result<Option<Job>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1 AND tenant = ?2"
        ))?
        .query_row(params![id, tenant], job_from_row)
        .optional()?
        .filter(|job| job.is_live(Timestamp(now))))
}

/// The statuses of a job that may still run, as an SQL list: `('pending', 'running')`.
pub(crate) fn unfinished_list() -> String {
    let names: Vec<String> = JobStatus::UNFINISHED
        .iter()
        .map(|status| format!("'{}'", status.as_str()))
        .collect();
    format!("({})", names.join(", "))
}

/// A job's stored status, whatever its retention.
pub(super) fn status_of(conn: &Connection, id: &str) -> rusqlite::Result<Option<JobStatus>> {
    let status: Option<String> = conn
        .prepare_cached("SELECT status FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    status
        .map(|s| JobStatus::parse(&s).ok_or_else(|| corrupt("status")))
        .transpose()
}

/// Whether a worker holding `token` may still write the job, as core's `decisions::holds` has
/// it of the row as stored. Every write of a lease holder asks this first; the single writer
/// makes the check and the write one step.
pub(crate) fn held_by(conn: &Connection, id: &str, token: &str) -> rusqlite::Result<bool> {
    let row: Option<(String, Option<String>)> = conn
        .prepare_cached("SELECT status, lease_token FROM jobs WHERE id = ?1")?
        .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((status, lease_token)) = row else {
        return Ok(false);
    };
    let status = JobStatus::parse(&status).ok_or_else(|| corrupt("status"))?;
    Ok(decisions::holds(status, lease_token.as_deref(), token))
}

pub(crate) fn job_ref(id: &str, tenant: &str) -> Option<JobRef> {
    Some(JobRef {
        id: JobId::parse(id)?,
        tenant: TenantId::parse(tenant)?,
    })
}

/// The outbox write: the event announcing the job's terminal `status`, in the same transaction.
pub(super) fn record_job_event(
    conn: &Connection,
    tenant: &TenantId,
    id: &JobId,
    status: JobStatus,
    now: Timestamp,
) -> rusqlite::Result<bool> {
    match EventKind::of_job(id.kind(), status) {
        Some(kind) => record_outbox_event(
            conn,
            &WebhookEvent::for_subject(tenant, kind, id.as_str(), now),
        ),
        None => Ok(false),
    }
}

pub(super) fn error_json(error: &JobError) -> rusqlite::Result<String> {
    serde_json::to_string(error).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

/// The claim of `target` under `lease`, in the caller's transaction: what core's
/// `decisions::claim` decides from the row, written when it takes the job. The job store's
/// `claim` and the queue's receive (which claims the jobs it delivers) both run it.
pub(crate) fn claim_in(
    conn: &Connection,
    target: &JobRef,
    lease: &Lease,
    now: Timestamp,
) -> rusqlite::Result<ClaimOutcome> {
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
        "UPDATE jobs SET status = ?2, lease_token = ?3, lease_expires_at = ?4, \
         started_at = ?5, attempts = ?6 WHERE id = ?1",
    )?
    .execute(params![
        id.as_str(),
        claimed.status.as_str(),
        lease.token,
        lease.expires_at.0,
        claimed.started_at.map(|t| t.0),
        claimed.attempts
    ])?;
    Ok(ClaimOutcome::Claimed(claimed))
}

/// The job's stored request body if it is at most `max_bytes` long (`None` when it is longer, or
/// the job is unknown), on the caller's connection: a read, or the claiming receive's write.
/// `length()` of a blob is read from the record header, so a longer body is never loaded.
pub(crate) fn request_in(
    conn: &Connection,
    job: &JobRef,
    max_bytes: i64,
) -> rusqlite::Result<Option<Bytes>> {
    conn.prepare_cached(
        "SELECT CASE WHEN length(request) <= ?3 THEN request END FROM jobs \
         WHERE id = ?1 AND tenant = ?2",
    )?
    .query_row(
        params![job.id.as_str(), job.tenant.as_str(), max_bytes],
        |r| r.get::<_, Option<Vec<u8>>>(0),
    )
    .optional()
    .map(|b| b.flatten().map(Bytes::from))
}

//! Recurring schedules in SQLite: the `RecurringStore` port (one row per schedule, every change
//! conditional on its version) and the `RecurringTrigger` port over the SQLite queue, which
//! holds one delayed firing per active schedule; the dispatcher wakes for it, and it survives
//! restarts.

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::jobs::decisions::idempotency_key_holds;
use prism_core::list::Page;
use prism_core::ports::{
    CreateOutcome, IdempotencyClaim, RecurringStore, RecurringTrigger, WorkQueue,
};
use prism_core::recurring::fire::firing;
use prism_core::recurring::{Recurrence, Recurring, RecurringRef, RecurringStatus};
use prism_core::{ApiEndpoint, Clock, JobId, StoreError, TenantId, Timestamp};
use rusqlite::{OptionalExtension, Row, params};
use std::sync::Arc;

use crate::db::Database;
use crate::queue::SqliteWorkQueue;

const COLUMNS: &str = "id, tenant, status, model, metadata, cron, timezone, start_at, end_at, \
                       max_runs, overlap, catch_up, created_at, next_run_at, last_run_at, \
                       last_fire_at, run_count, skipped_count, ended_at, version, endpoint";

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, what.to_owned(), rusqlite::types::Type::Text)
}

fn ts(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Timestamp>> {
    Ok(row.get::<_, Option<i64>>(index)?.map(Timestamp))
}

fn schedule_from_row(row: &Row<'_>) -> rusqlite::Result<Recurring> {
    let id: String = row.get(0)?;
    let tenant: String = row.get(1)?;
    let status: String = row.get(2)?;
    let metadata: Option<String> = row.get(4)?;
    let cron: String = row.get(5)?;
    let timezone: String = row.get(6)?;
    let overlap: String = row.get(10)?;
    let catch_up: String = row.get(11)?;
    let endpoint: Option<String> = row.get(20)?;
    let recurrence = Recurrence::from_stored(
        &cron,
        &timezone,
        ts(row, 7)?,
        ts(row, 8)?,
        row.get(9)?,
        &overlap,
        &catch_up,
    )
    .ok_or_else(|| corrupt("recurrence"))?;
    Ok(Recurring {
        id: JobId::parse(&id).ok_or_else(|| corrupt("id"))?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        status: RecurringStatus::parse(&status).ok_or_else(|| corrupt("status"))?,
        // NULL: a schedule stored before schedules named their endpoint.
        endpoint: match endpoint {
            None => ApiEndpoint::ChatCompletions,
            Some(path) => ApiEndpoint::from_path(&path).ok_or_else(|| corrupt("endpoint"))?,
        },
        model: row.get(3)?,
        metadata: metadata
            .map(|m| serde_json::from_str(&m))
            .transpose()
            .map_err(|_| corrupt("metadata"))?,
        recurrence,
        created_at: Timestamp(row.get(12)?),
        next_run_at: ts(row, 13)?,
        last_run_at: ts(row, 14)?,
        last_fire_at: ts(row, 15)?,
        run_count: row.get(16)?,
        skipped_count: row.get(17)?,
        ended_at: ts(row, 18)?,
        version: row.get(19)?,
    })
}

#[derive(Clone)]
pub struct SqliteRecurringStore {
    db: Database,
}

impl SqliteRecurringStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

#[async_trait]
impl RecurringStore for SqliteRecurringStore {
    async fn create(
        &self,
        s: &Recurring,
        request: &Bytes,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let (s, request, claim) = (s.clone(), request.clone(), idempotency.cloned());
        self.db
            .write(move |conn| {
                // The same table as job creates' keys, in the same write as the schedule.
                if let Some(claim) = &claim {
                    let existing: Option<(String, String, i64)> = conn
                        .prepare_cached(
                            "SELECT job_id, body_hash, expires_at FROM idempotency_keys \
                             WHERE tenant = ?1 AND key = ?2",
                        )?
                        .query_row(params![s.tenant.as_str(), claim.key], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()?;
                    if let Some((job_id, hash, expires_at)) = existing
                        && idempotency_key_holds(Timestamp(expires_at), s.created_at)
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
                        s.tenant.as_str(),
                        claim.key,
                        claim.body_hash,
                        s.id.as_str(),
                        claim.expires_at.0
                    ])?;
                }
                let metadata = s
                    .metadata
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                let r = &s.recurrence;
                conn.prepare_cached(
                    "INSERT INTO recurring_schedules (id, tenant, status, model, request, metadata, \
                       cron, timezone, start_at, end_at, max_runs, overlap, catch_up, created_at, \
                       next_run_at, last_run_at, last_fire_at, run_count, skipped_count, ended_at, version, \
                       endpoint) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                       ?16, ?17, ?18, ?19, ?20, ?21, ?22)",
                )?
                .execute(params![
                    s.id.as_str(),
                    s.tenant.as_str(),
                    s.status.as_str(),
                    s.model,
                    request.as_ref(),
                    metadata,
                    r.cron.as_str(),
                    r.timezone,
                    r.start_at.map(|t| t.0),
                    r.end_at.map(|t| t.0),
                    r.max_runs,
                    r.overlap.as_str(),
                    r.catch_up.as_str(),
                    s.created_at.0,
                    s.next_run_at.map(|t| t.0),
                    s.last_run_at.map(|t| t.0),
                    s.last_fire_at.map(|t| t.0),
                    s.run_count,
                    s.skipped_count,
                    s.ended_at.map(|t| t.0),
                    s.version,
                    s.endpoint.path()
                ])?;
                Ok(CreateOutcome::Created { triggered: false })
            })
            .await
    }

    async fn get(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Recurring>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.clone());
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM recurring_schedules WHERE id = ?1 AND tenant = ?2"
                ))?
                .query_row(params![id.as_str(), tenant.as_str()], schedule_from_row)
                .optional()
            })
            .await
    }

    async fn request_body(&self, s: &RecurringRef) -> Result<Option<Bytes>, StoreError> {
        let s = s.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT request FROM recurring_schedules WHERE id = ?1 AND tenant = ?2",
                )?
                .query_row(params![s.id.as_str(), s.tenant.as_str()], |r| {
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
        limit: usize,
        after: Option<&JobId>,
    ) -> Result<Page<Recurring>, StoreError> {
        let (tenant, after) = (tenant.clone(), after.cloned());
        self.db
            .read(move |conn| {
                let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
                let mut items = conn
                    .prepare_cached(&format!(
                        "SELECT {COLUMNS} FROM recurring_schedules \
                         WHERE tenant = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
                    ))?
                    .query_map(
                        params![tenant.as_str(), after.as_ref().map(JobId::as_str), fetch],
                        schedule_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let has_more = items.len() > limit;
                items.truncate(limit);
                Ok(Page { items, has_more })
            })
            .await
    }

    async fn count_live(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let tenant = tenant.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT COUNT(*) FROM recurring_schedules WHERE tenant = ?1 AND status IN (?2, ?3)",
                )?
                .query_row(
                    params![
                        tenant.as_str(),
                        RecurringStatus::Active.as_str(),
                        RecurringStatus::Paused.as_str()
                    ],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
            })
            .await
    }

    async fn update(&self, next: &Recurring) -> Result<bool, StoreError> {
        let s = next.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE recurring_schedules SET status = ?3, next_run_at = ?4, last_run_at = ?5, \
                       last_fire_at = ?6, run_count = ?7, skipped_count = ?8, ended_at = ?9, \
                       version = version + 1 \
                     WHERE id = ?1 AND tenant = ?2 AND version = ?10",
                )?
                .execute(params![
                    s.id.as_str(),
                    s.tenant.as_str(),
                    s.status.as_str(),
                    s.next_run_at.map(|t| t.0),
                    s.last_run_at.map(|t| t.0),
                    s.last_fire_at.map(|t| t.0),
                    s.run_count,
                    s.skipped_count,
                    s.ended_at.map(|t| t.0),
                    s.version
                ])
                .map(|n| n == 1)
            })
            .await
    }
}

/// Firings as delayed messages on the SQLite queue: one for the next fire time at a time.
#[derive(Clone)]
pub struct SqliteRecurringTrigger {
    queue: SqliteWorkQueue,
    clock: Arc<dyn Clock>,
}

impl SqliteRecurringTrigger {
    pub fn new(queue: SqliteWorkQueue, clock: Arc<dyn Clock>) -> Self {
        Self { queue, clock }
    }

    async fn queue_next(&self, s: &Recurring) -> Result<(), StoreError> {
        let Some(at) = s.next_run_at else {
            return Ok(());
        };
        self.queue
            .enqueue(&firing(&s.tenant, &s.id, at), self.clock.now().until(at))
            .await
    }
}

#[async_trait]
impl RecurringTrigger for SqliteRecurringTrigger {
    async fn arm(&self, s: &Recurring) -> Result<(), StoreError> {
        self.queue_next(s).await
    }

    async fn rearm(&self, s: &Recurring) -> Result<(), StoreError> {
        self.queue_next(s).await
    }

    async fn pause(&self, s: &Recurring) -> Result<(), StoreError> {
        self.queue.drop_waiting_firings(&s.recurring_ref()).await
    }

    async fn disarm(&self, s: &Recurring) -> Result<(), StoreError> {
        self.queue.drop_waiting_firings(&s.recurring_ref()).await
    }
}

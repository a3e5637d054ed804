//! The `WorkQueue` port in SQLite: a job's deliveries on its own row (storing and queueing a job
//! cannot drift apart), batch-stage items in `work_items`, receipts, visibility and delays.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use prism_core::batches::BatchRef;
use prism_core::ids::new_lease_token;
use prism_core::ports::{
    ClaimOutcome, Delivery, Lease, Receipt, ReceivedClaim, WorkItem, WorkQueue,
};
use prism_core::recurring::RecurringRef;
use prism_core::trace_context::TraceContext;
use prism_core::webhooks::EventRef;
use prism_core::{BatchId, Clock, Stage, StoreError, TenantId, Timestamp};
use rand::Rng;
use rusqlite::{Connection, params};
use tokio::sync::Notify;

use crate::db::Database;
use crate::jobs::{claim_in, job_ref, request_in, unfinished_list};

/// The `WorkQueue` port over the same rows. Wakes the in-process dispatcher on every enqueue, so
/// workers wait on a notification instead of polling.
#[derive(Clone)]
pub struct SqliteWorkQueue {
    db: Database,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    settled: SettledByFinish,
    /// When set, a receive also claims the jobs it delivers, under a lease this long (see
    /// [`SqliteWorkQueue::claiming_on_receive`]).
    claim_lease: Option<Duration>,
}

/// Jobs whose queue entry their finishing write already dropped (a terminal job's message is
/// redundant): the acknowledgement that follows costs no write of its own. Losing an entry
/// (a restart, the cap) only costs that write.
#[derive(Clone, Default)]
pub(crate) struct SettledByFinish(Arc<Mutex<HashSet<String>>>);

/// Entries kept at most; an acknowledgement follows each finish at once, so this is only reached
/// if acknowledgements stop coming.
const MAX_SETTLED: usize = 65_536;
/// The largest request body a claiming receive reads for its worker. The receive is one write on
/// the single writer thread and takes up to the workers' free slots (hundreds) at once, while a
/// body may be megabytes: a larger one is read by its worker, off the writer's path.
const RECEIVE_BODY_MAX_BYTES: i64 = 32 * 1024;

impl SettledByFinish {
    pub(crate) fn insert(&self, id: &str) {
        if let Ok(mut ids) = self.0.lock() {
            if ids.len() >= MAX_SETTLED {
                ids.clear();
            }
            ids.insert(id.to_owned());
        }
    }

    fn take(&self, id: &str) -> bool {
        self.0.lock().is_ok_and(|mut ids| ids.remove(id))
    }
}

impl SqliteWorkQueue {
    pub fn new(db: Database, clock: Arc<dyn Clock>) -> Self {
        Self {
            db,
            clock,
            wake: Arc::new(Notify::new()),
            settled: SettledByFinish::default(),
            claim_lease: None,
        }
    }

    /// Receives claim the jobs they deliver in the same write, under a fresh lease of `lease`
    /// (the worker's own, `Policies::undeadlined_lease`): the worker's claim costs no write of
    /// its own. For a process whose workers run every delivery they receive.
    pub fn claiming_on_receive(mut self, lease: Duration) -> Self {
        self.claim_lease = Some(lease);
        self
    }

    pub(crate) fn settled_by_finish(&self) -> SettledByFinish {
        self.settled.clone()
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
    /// Drops the waiting (not in-flight) firings of a recurring schedule: what pausing or
    /// deleting it is on a queue that carries delays itself.
    pub async fn drop_waiting_firings(&self, schedule: &RecurringRef) -> Result<(), StoreError> {
        let id = schedule.id.as_str().to_owned();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "DELETE FROM work_items WHERE kind = ?1 AND batch_id = ?2 AND receipt IS NULL",
                )?
                .execute(params![FIRE_KIND, id])
            })
            .await
            .map(|_| ())
    }

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
pub(crate) fn enqueue_work_item(
    conn: &Connection,
    item: &WorkItem,
    visible_at: i64,
    trace: Option<&TraceContext>,
) -> rusqlite::Result<()> {
    let (tenant, subject, chunk, kind) = match item {
        WorkItem::PlanBatch(b) | WorkItem::FinalizeBatch(b) => {
            (&b.tenant, b.id.as_str(), None, item.stage().name())
        }
        WorkItem::RunChunk { batch, chunk } => (
            &batch.tenant,
            batch.id.as_str(),
            Some(i64::from(*chunk)),
            item.stage().name(),
        ),
        WorkItem::Webhook(event) => (&event.tenant, event.id.as_str(), None, item.stage().name()),
        WorkItem::FireSchedule { schedule, at } => (
            &schedule.tenant,
            schedule.id.as_str(),
            Some(at.0),
            FIRE_KIND,
        ),
        WorkItem::PollNative { batch, group } => (
            &batch.tenant,
            batch.id.as_str(),
            Some(i64::from(*group)),
            NATIVE_KIND,
        ),
        WorkItem::Job(_) => return Ok(()),
    };
    conn.prepare_cached(
        "INSERT INTO work_items (key, kind, tenant, batch_id, chunk, visible_at, trace_context) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT(key) DO UPDATE SET \
           visible_at = CASE WHEN receipt IS NOT NULL OR visible_at > excluded.visible_at \
             THEN excluded.visible_at ELSE visible_at END, \
           receipt = NULL, receives = 0, \
           trace_context = COALESCE(excluded.trace_context, trace_context)",
    )?
    .execute(params![
        item.key(),
        kind,
        tenant.as_str(),
        subject,
        chunk,
        visible_at,
        trace.map(TraceContext::as_str)
    ])
    .map(|_| ())
}

/// The `kind` of a firing's row (batch stages use their stage's name).
const FIRE_KIND: &str = "fire";
/// The `kind` of a native group's look (its `chunk` column holds the group).
const NATIVE_KIND: &str = "native";

fn work_item_from(
    kind: &str,
    tenant: &str,
    batch_id: &str,
    chunk: Option<i64>,
) -> Option<WorkItem> {
    if kind == FIRE_KIND {
        return Some(WorkItem::FireSchedule {
            schedule: RecurringRef {
                tenant: TenantId::parse(tenant)?,
                id: prism_core::JobId::parse(batch_id)?,
            },
            at: Timestamp(chunk?),
        });
    }
    let chunk = chunk.map(u32::try_from).transpose().ok()?;
    if kind == NATIVE_KIND {
        return Some(WorkItem::PollNative {
            batch: BatchRef {
                tenant: TenantId::parse(tenant)?,
                id: BatchId::parse(batch_id)?,
            },
            group: chunk?,
        });
    }
    let stage = Stage::parse(kind)?;
    if stage == Stage::Webhooks {
        return Some(WorkItem::Webhook(EventRef {
            tenant: TenantId::parse(tenant)?,
            id: batch_id.to_owned(),
        }));
    }
    let batch = BatchRef {
        tenant: TenantId::parse(tenant)?,
        id: BatchId::parse(batch_id)?,
    };
    WorkItem::of_batch(stage, batch, chunk)
}

/// The visible batch-stage items, oldest first. A receive steps through only the first `max`
/// rows instead of binding a `LIMIT`: SQLite (3.54) plans with a bound `LIMIT`'s value and so
/// re-prepares the statement whenever it changes, and `max` (the free worker slots) changes on
/// almost every receive. The index scan is already in `visible_at` order, so stopping after
/// `max` rows costs what the `LIMIT` did.
pub(crate) const RECEIVE_WORK_ITEMS: &str = "SELECT key, kind, tenant, batch_id, chunk, \
    trace_context FROM work_items WHERE visible_at <= ?1 ORDER BY visible_at";

/// The jobs whose delivery is visible, oldest first; no `LIMIT`, as for [`RECEIVE_WORK_ITEMS`].
pub(crate) const RECEIVE_JOBS: &str = "SELECT id, tenant, trace_context FROM jobs \
    WHERE queue_visible_at IS NOT NULL AND queue_visible_at <= ?1 ORDER BY queue_visible_at";

fn receive_work_items(
    conn: &Connection,
    now: Timestamp,
    hidden_until: i64,
    max: usize,
    rng: &mut impl Rng,
) -> rusqlite::Result<Vec<Delivery>> {
    let rows = conn
        .prepare_cached(RECEIVE_WORK_ITEMS)?
        .query_map(params![now.0], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<String>>(5)?,
            ))
        })?
        .take(max)
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut hide = conn.prepare_cached(
        "UPDATE work_items SET visible_at = ?2, receipt = ?3, receives = receives + 1 \
         WHERE key = ?1 RETURNING receives",
    )?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for (key, kind, tenant, batch_id, chunk, trace) in rows {
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
            trace: trace.as_deref().and_then(TraceContext::parse),
            claim: None,
        });
    }
    Ok(deliveries)
}

#[async_trait]
impl WorkQueue for SqliteWorkQueue {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        let visible_at = self.clock.now().plus(delay).0;
        let item = item.clone();
        let trace = prism_core::trace_context::current();
        self.db
            .write(move |conn| match &item {
                // Like a second SQS message: never later than a message already waiting.
                WorkItem::Job(job) => conn
                    .prepare_cached(&format!(
                        "UPDATE jobs SET queue_visible_at = \
                           CASE WHEN queue_visible_at IS NULL OR queue_visible_at > ?2 THEN ?2 \
                           ELSE queue_visible_at END, \
                           trace_context = COALESCE(?3, trace_context) \
                         WHERE id = ?1 AND status IN {}",
                        unfinished_list()
                    ))?
                    .execute(params![
                        job.id.as_str(),
                        visible_at,
                        trace.as_ref().map(TraceContext::as_str)
                    ])
                    .map(|_| ()),
                other => enqueue_work_item(conn, other, visible_at, trace.as_ref()),
            })
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let now = self.clock.now();
        let hidden_until = now.plus(visibility).0;
        let claim_lease = self.claim_lease;
        self.db
            .write(move |conn| {
                let ids = conn
                    .prepare_cached(RECEIVE_JOBS)?
                    .query_map(params![now.0], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<String>>(2)?,
                        ))
                    })?
                    .take(max)
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let mut stmt = conn.prepare_cached(
                    "UPDATE jobs SET queue_visible_at = ?2, queue_receipt = ?3, \
                     queue_receives = queue_receives + 1 WHERE id = ?1 RETURNING queue_receives",
                )?;
                let mut rng = rand::rng();
                let mut deliveries = Vec::with_capacity(ids.len());
                for (id, tenant, trace) in ids {
                    let receipt = hex::encode(rng.random::<[u8; 8]>());
                    let receives: u32 =
                        stmt.query_row(params![id, hidden_until, receipt], |r| r.get(0))?;
                    let Some(job) = job_ref(&id, &tenant) else {
                        continue;
                    };
                    // A claim that fails to read or write is left to the worker, which meets
                    // the same failure in its own claim and backs off.
                    let claim = claim_lease.and_then(|length| {
                        let lease = Lease {
                            token: new_lease_token(),
                            expires_at: now.plus(length),
                        };
                        let outcome = claim_in(conn, &job, &lease, now).ok()?;
                        // The body rides along only with a claim that took the job, and only a
                        // small one (see RECEIVE_BODY_MAX_BYTES); a body that is larger or fails
                        // to read is read by the worker.
                        let request = match outcome {
                            ClaimOutcome::Claimed(_) => {
                                request_in(conn, &job, RECEIVE_BODY_MAX_BYTES)
                                    .ok()
                                    .flatten()
                            }
                            _ => None,
                        };
                        Some(Box::new(ReceivedClaim {
                            lease,
                            at: now,
                            outcome,
                            request,
                        }))
                    });
                    deliveries.push(Delivery {
                        item: WorkItem::Job(job),
                        receipt: Receipt(format!("{id}:{receipt}")),
                        receive_count: receives,
                        trace: trace.as_deref().and_then(TraceContext::parse),
                        claim,
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
        if self.settled.take(id) {
            // The job's finishing write dropped its queue entry: acknowledged as part of it.
            return Ok(());
        }
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use prism_core::SystemClock;
    use rusqlite::StatementStatus;

    use super::*;

    /// How often the writer has re-prepared `sql` since it first prepared it.
    async fn reprepares(db: &Database, sql: &'static str) -> i32 {
        db.write(move |conn| {
            Ok(conn
                .prepare_cached(sql)?
                .get_status(StatementStatus::RePrepare))
        })
        .await
        .unwrap()
    }

    // Receives ask for as many as their free worker slots, a different number almost every
    // time; a bound LIMIT made SQLite plan the statement again for each (the writer spent about
    // an eighth of its time in it under load).
    #[tokio::test]
    async fn a_receive_of_any_size_reuses_its_prepared_statements() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.sqlite3")).unwrap();
        let queue = SqliteWorkQueue::new(db.clone(), Arc::new(SystemClock));
        let ids = prism_core::ids::IdGenerator::new();
        for _ in 0..10 {
            let batch = BatchRef {
                tenant: TenantId::parse("acme").unwrap(),
                id: ids.batch_id(SystemClock.now()),
            };
            queue
                .enqueue(&WorkItem::PlanBatch(batch), Duration::ZERO)
                .await
                .unwrap();
        }
        let mut received = 0;
        for max in [1, 2, 3, 4] {
            received += queue
                .receive(max, Duration::from_secs(60))
                .await
                .unwrap()
                .len();
        }
        assert_eq!(received, 10, "each receive took as many as it asked for");

        assert_eq!(reprepares(&db, RECEIVE_JOBS).await, 0);
        assert_eq!(reprepares(&db, RECEIVE_WORK_ITEMS).await, 0);
    }

    // Stopping after `max` rows costs what a LIMIT did only while the rows come from the index
    // in order; a sort would read every visible row first.
    #[tokio::test]
    async fn the_receives_read_their_index_in_order_without_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::open(&dir.path().join("q.sqlite3")).unwrap();
        for sql in [RECEIVE_JOBS, RECEIVE_WORK_ITEMS] {
            let plan = db
                .write(move |conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let steps = stmt.query_map([0], |r| r.get::<_, String>(3))?;
                    steps.collect::<rusqlite::Result<Vec<_>>>()
                })
                .await
                .unwrap();
            assert!(
                plan.iter().all(|step| !step.contains("TEMP B-TREE"))
                    && plan.iter().any(|step| step.contains("USING INDEX")),
                "{sql}: {plan:?}"
            );
        }
    }
}

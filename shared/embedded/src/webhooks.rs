//! The `WebhookStore` port in SQLite: endpoints, the event outbox, delivery states and
//! attempts. [`record_outbox_event`] is the outbox write the job and batch stores call inside
//! the transaction that makes their item terminal (when an endpoint takes the event); it also
//! queues the event's delivery (a
//! `work_items` row), so event and trigger cannot drift apart and nothing needs re-triggering.

use std::sync::Arc;

use async_trait::async_trait;
use prism_core::ports::{WebhookStore, WorkItem};
use prism_core::webhooks::{
    Attempt, DeliveryOutcome, DeliveryState, Endpoint, EndpointStatus, EventKind, EventRef, Secret,
    WebhookEvent, decisions,
};
use prism_core::{StoreError, TenantId, Timestamp};
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::Notify;

use crate::db::Database;
use crate::queue::enqueue_work_item;

fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnName(format!("corrupt {what}"))
}

/// Records `event` and queues its delivery, in the caller's transaction. A second record of
/// the same id (a redelivered terminal write cannot happen, but a replayed test could) is a
/// no-op. Returns whether it was new.
pub(crate) fn record_event_in(conn: &Connection, event: &WebhookEvent) -> rusqlite::Result<bool> {
    let inserted = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO webhook_events (id, tenant, kind, subject, created_at, endpoint) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            event.id,
            event.tenant.as_str(),
            event.kind.as_str(),
            event.subject,
            event.created_at.0,
            event.endpoint
        ])?;
    if inserted == 1 {
        enqueue_work_item(
            conn,
            &WorkItem::Webhook(event.event_ref()),
            event.created_at.0,
            None,
        )?;
    }
    Ok(inserted == 1)
}

/// The outbox write of a terminal transition, inside its transaction: the event is recorded
/// (and queued) only when an endpoint of the tenant takes it (`decisions::worth_recording`), read
/// in the same transaction, so an endpoint's creation and a transition are ordered. Returns
/// whether an event was queued.
pub(crate) fn record_outbox_event(
    conn: &Connection,
    event: &WebhookEvent,
) -> rusqlite::Result<bool> {
    let endpoints = conn
        .prepare_cached(&format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ?1"
        ))?
        .query_map(params![event.tenant.as_str()], endpoint_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    if decisions::worth_recording(&endpoints, event) {
        return record_event_in(conn, event);
    }
    Ok(false)
}

fn endpoint_from_row(row: &Row<'_>) -> rusqlite::Result<Endpoint> {
    let tenant: String = row.get(1)?;
    let events: String = row.get(3)?;
    let status: String = row.get(5)?;
    let secrets: String = row.get(7)?;
    Ok(Endpoint {
        id: row.get(0)?,
        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
        url: row.get(2)?,
        events: serde_json::from_str::<Vec<EventKind>>(&events).map_err(|_| corrupt("events"))?,
        description: row.get(4)?,
        status: match status.as_str() {
            "disabled" => EndpointStatus::Disabled,
            _ => EndpointStatus::Enabled,
        },
        created_at: Timestamp(row.get(6)?),
        secrets: serde_json::from_str::<Vec<Secret>>(&secrets).map_err(|_| corrupt("secrets"))?,
        failing_since: row.get::<_, Option<i64>>(8)?.map(Timestamp),
        disabled_at: row.get::<_, Option<i64>>(9)?.map(Timestamp),
    })
}

const ENDPOINT_COLUMNS: &str = "id, tenant, url, events, description, status, created_at, \
                                secrets, failing_since, disabled_at";

fn to_json<T: serde::Serialize>(value: &T) -> rusqlite::Result<String> {
    serde_json::to_string(value).map_err(|_| corrupt("json"))
}

fn outcome_name(outcome: DeliveryOutcome) -> &'static str {
    match outcome {
        DeliveryOutcome::Pending => "pending",
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::GaveUp => "gave_up",
    }
}

fn outcome_parse(name: &str) -> DeliveryOutcome {
    match name {
        "delivered" => DeliveryOutcome::Delivered,
        "gave_up" => DeliveryOutcome::GaveUp,
        _ => DeliveryOutcome::Pending,
    }
}

#[derive(Clone)]
pub struct SqliteWebhookStore {
    db: Database,
    wake: Arc<Notify>,
}

impl SqliteWebhookStore {
    /// `wake` is the queue's: a recorded event is delivered at once.
    pub fn new(db: Database, wake: Arc<Notify>) -> Self {
        Self { db, wake }
    }
}

#[async_trait]
impl WebhookStore for SqliteWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let e = endpoint.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(&format!(
                    "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"
                ))?
                .execute(params![
                    e.id,
                    e.tenant.as_str(),
                    e.url,
                    to_json(&e.events)?,
                    e.description,
                    e.status.as_str(),
                    e.created_at.0,
                    to_json(&e.secrets)?,
                    e.failing_since.map(|t| t.0),
                    e.disabled_at.map(|t| t.0)
                ])
                .map(|_| ())
            })
            .await
    }

    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ?1 AND id = ?2"
                ))?
                .query_row(params![tenant.as_str(), id], endpoint_from_row)
                .optional()
            })
            .await
    }

    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        let tenant = tenant.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant = ?1 \
                     ORDER BY id DESC"
                ))?
                .query_map(params![tenant.as_str()], endpoint_from_row)?
                .collect()
            })
            .await
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let e = endpoint.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached(
                    "UPDATE webhook_endpoints SET status = ?3, secrets = ?4, failing_since = ?5, \
                     disabled_at = ?6 WHERE tenant = ?1 AND id = ?2",
                )?
                .execute(params![
                    e.tenant.as_str(),
                    e.id,
                    e.status.as_str(),
                    to_json(&e.secrets)?,
                    e.failing_since.map(|t| t.0),
                    e.disabled_at.map(|t| t.0)
                ])
                .map(|n| n == 1)
            })
            .await
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let (tenant, id) = (tenant.clone(), id.to_owned());
        self.db
            .write(move |conn| {
                conn.prepare_cached("DELETE FROM webhook_endpoints WHERE tenant = ?1 AND id = ?2")?
                    .execute(params![tenant.as_str(), id])
                    .map(|n| n == 1)
            })
            .await
    }

    async fn record_event(&self, event: &WebhookEvent) -> Result<(), StoreError> {
        let event = event.clone();
        self.db
            .write(move |conn| record_event_in(conn, &event))
            .await?;
        self.wake.notify_one();
        Ok(())
    }

    async fn event(&self, event: &EventRef) -> Result<Option<WebhookEvent>, StoreError> {
        let event = event.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, tenant, kind, subject, created_at, endpoint FROM webhook_events \
                     WHERE tenant = ?1 AND id = ?2",
                )?
                .query_row(params![event.tenant.as_str(), event.id], |row| {
                    let tenant: String = row.get(1)?;
                    let kind: String = row.get(2)?;
                    Ok(WebhookEvent {
                        id: row.get(0)?,
                        tenant: TenantId::parse(&tenant).ok_or_else(|| corrupt("tenant"))?,
                        kind: EventKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
                        subject: row.get(3)?,
                        created_at: Timestamp(row.get(4)?),
                        endpoint: row.get(5)?,
                    })
                })
                .optional()
            })
            .await
    }

    async fn delivery_states(&self, event: &EventRef) -> Result<Vec<DeliveryState>, StoreError> {
        let id = event.id.clone();
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT event_id, endpoint_id, attempts, first_attempt_at, next_at, outcome \
                     FROM webhook_deliveries WHERE event_id = ?1",
                )?
                .query_map(params![id], |row| {
                    let outcome: String = row.get(5)?;
                    Ok(DeliveryState {
                        event_id: row.get(0)?,
                        endpoint_id: row.get(1)?,
                        attempts: row.get(2)?,
                        first_attempt_at: row.get::<_, Option<i64>>(3)?.map(Timestamp),
                        next_at: row.get::<_, Option<i64>>(4)?.map(Timestamp),
                        outcome: outcome_parse(&outcome),
                    })
                })?
                .collect()
            })
            .await
    }

    async fn record_attempt(
        &self,
        tenant: &TenantId,
        attempt: Option<&Attempt>,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        let (tenant, attempt, s) = (tenant.clone(), attempt.cloned(), state.clone());
        self.db
            .write(move |conn| {
                if let Some(a) = &attempt {
                    conn.prepare_cached(
                        "INSERT OR IGNORE INTO webhook_attempts (id, tenant, endpoint_id, event_id, \
                         event_type, attempt, status_code, latency_ms, error, succeeded, created_at) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                    )?
                    .execute(params![
                        a.id,
                        tenant.as_str(),
                        a.endpoint_id,
                        a.event_id,
                        a.event_type.as_str(),
                        a.attempt,
                        a.status_code,
                        i64::try_from(a.latency_ms).unwrap_or(i64::MAX),
                        a.error,
                        a.succeeded,
                        a.created_at.0
                    ])?;
                }
                conn.prepare_cached(
                    "INSERT INTO webhook_deliveries (event_id, endpoint_id, attempts, \
                     first_attempt_at, next_at, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                     ON CONFLICT(event_id, endpoint_id) DO UPDATE SET attempts = excluded.attempts, \
                     first_attempt_at = excluded.first_attempt_at, next_at = excluded.next_at, \
                     outcome = excluded.outcome",
                )?
                .execute(params![
                    s.event_id,
                    s.endpoint_id,
                    s.attempts,
                    s.first_attempt_at.map(|t| t.0),
                    s.next_at.map(|t| t.0),
                    outcome_name(s.outcome)
                ])
                .map(|_| ())
            })
            .await
    }

    async fn attempts(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        let (tenant, endpoint_id) = (tenant.clone(), endpoint_id.to_owned());
        self.db
            .read(move |conn| {
                conn.prepare_cached(
                    "SELECT id, endpoint_id, event_id, event_type, attempt, status_code, latency_ms, \
                     error, succeeded, created_at FROM webhook_attempts \
                     WHERE tenant = ?1 AND endpoint_id = ?2 ORDER BY id DESC LIMIT ?3",
                )?
                .query_map(
                    params![
                        tenant.as_str(),
                        endpoint_id,
                        i64::try_from(limit).unwrap_or(i64::MAX)
                    ],
                    |row| {
                        let kind: String = row.get(3)?;
                        Ok(Attempt {
                            id: row.get(0)?,
                            endpoint_id: row.get(1)?,
                            event_id: row.get(2)?,
                            event_type: EventKind::parse(&kind).ok_or_else(|| corrupt("kind"))?,
                            attempt: row.get(4)?,
                            status_code: row.get(5)?,
                            latency_ms: u64::try_from(row.get::<_, i64>(6)?).unwrap_or(0),
                            error: row.get(7)?,
                            succeeded: row.get(8)?,
                            created_at: Timestamp(row.get(9)?),
                        })
                    },
                )?
                .collect()
            })
            .await
    }

    /// The outbox write queued the trigger with the event, so nothing is ever stranded here.
    async fn undelivered(
        &self,
        _before: Timestamp,
        _limit: usize,
    ) -> Result<Vec<EventRef>, StoreError> {
        Ok(Vec::new())
    }

    async fn settle_event(&self, event: &EventRef) -> Result<(), StoreError> {
        let id = event.id.clone();
        self.db
            .write(move |conn| {
                conn.prepare_cached("UPDATE webhook_events SET settled = 1 WHERE id = ?1")?
                    .execute(params![id])
                    .map(|_| ())
            })
            .await
    }
}

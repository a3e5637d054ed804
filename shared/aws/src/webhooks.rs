//! Webhooks in DynamoDB: the `WebhookStore` port and the outbox item the job and batch stores
//! put in the transaction that makes their item terminal ([`event_put`]). Layout, all under
//! the owner's partitions: endpoints `T#<tenant>#WE / <we id>`; events `T#<tenant>#EV /
//! <evt id>`, unsettled ones also in the sparse reconcile index (`W#<n>`, by creation time) so
//! a lost trigger is found again; each event's state per endpoint `T#<tenant>#EV / <evt
//! id>#D#<we id>`; attempts `T#<tenant>#WA#<we id> / <attempt id>`. Events and attempts expire
//! after 30 days (TTL).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use prism_core::ports::{WebhookStore, WorkItem, WorkQueue};
use prism_core::webhooks::{
    Attempt, DeliveryOutcome, DeliveryState, Endpoint, EndpointStatus, EventKind, EventRef, Secret,
    WebhookEvent,
};
use prism_core::{StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, RC_AT, RC_PK, SORT_KEY, TTL_ATTRIBUTE, get_n, get_s, get_ts, n, need_s,
    reconcile_shard, s, tenant_of_pk, tenant_pk, unavailable,
};
use crate::queue::SqsWorkQueue;
use crate::reconcile_index::keys_due;
use crate::write;

/// Unsettled events' shards of the reconcile index.
const RECONCILE_PREFIX: &str = "W#";
/// How long events and attempts are kept.
const RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn endpoint_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "WE")
}

fn event_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "EV")
}

fn attempt_pk(tenant: &TenantId, endpoint: &str) -> AttributeValue {
    tenant_pk(tenant, &format!("WA#{endpoint}"))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("webhook item has a bad '{what}'"))
}

fn ttl(at: Timestamp) -> AttributeValue {
    n(at.plus(RETENTION).unix_seconds())
}

fn json<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The event's outbox item: in the reconcile index until its delivery settles.
pub fn event_item(event: &WebhookEvent) -> Item {
    let mut item = Item::from([
        (PARTITION_KEY.to_owned(), event_pk(&event.tenant)),
        (SORT_KEY.to_owned(), s(event.id.as_str())),
        ("kind".to_owned(), s(event.kind.as_str())),
        ("subject".to_owned(), s(event.subject.as_str())),
        ("created_at".to_owned(), n(event.created_at.0)),
        (
            RC_PK.to_owned(),
            reconcile_shard(RECONCILE_PREFIX, &event.id),
        ),
        (RC_AT.to_owned(), n(event.created_at.0)),
        (TTL_ATTRIBUTE.to_owned(), ttl(event.created_at)),
    ]);
    if let Some(endpoint) = &event.endpoint {
        item.insert("endpoint".to_owned(), s(endpoint.as_str()));
    }
    item
}

/// The transaction step that records `event` beside a terminal transition (the outbox).
pub fn event_put(table: &str, event: &WebhookEvent) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(event_item(event)))
        .build()
        .map_err(unavailable)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Sends the trigger of an event its terminal write just recorded. A failure only delays the
/// event: the reconciler finds it in the index and triggers it again.
pub async fn relay(trigger: Option<&SqsWorkQueue>, event: &WebhookEvent) {
    let Some(queue) = trigger else {
        return;
    };
    let item = WorkItem::Webhook(event.event_ref());
    if let Err(error) = queue.enqueue(&item, Duration::ZERO).await {
        tracing::warn!(%error, event_id = %event.id, "could not trigger a webhook event; the reconciler will");
    }
}

fn endpoint_from_item(item: &Item) -> Result<Endpoint, StoreError> {
    let pk = need_s(item, PARTITION_KEY)?;
    Ok(Endpoint {
        id: need_s(item, SORT_KEY)?.to_owned(),
        tenant: tenant_of_pk(pk, "WE").ok_or_else(|| corrupt(PARTITION_KEY))?,
        url: need_s(item, "url")?.to_owned(),
        events: serde_json::from_str::<Vec<EventKind>>(need_s(item, "events")?)
            .map_err(|_| corrupt("events"))?,
        description: get_s(item, "description").map(str::to_owned),
        status: match get_s(item, "status") {
            Some("disabled") => EndpointStatus::Disabled,
            _ => EndpointStatus::Enabled,
        },
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        secrets: serde_json::from_str::<Vec<Secret>>(need_s(item, "secrets")?)
            .map_err(|_| corrupt("secrets"))?,
        failing_since: get_ts(item, "failing_since"),
        disabled_at: get_ts(item, "disabled_at"),
    })
}

fn endpoint_item(e: &Endpoint) -> Result<Item, StoreError> {
    let mut item = Item::from([
        (PARTITION_KEY.to_owned(), endpoint_pk(&e.tenant)),
        (SORT_KEY.to_owned(), s(e.id.as_str())),
        ("url".to_owned(), s(e.url.as_str())),
        ("events".to_owned(), json(&e.events)?),
        ("status".to_owned(), s(e.status.as_str())),
        ("created_at".to_owned(), n(e.created_at.0)),
        ("secrets".to_owned(), json(&e.secrets)?),
    ]);
    if let Some(d) = &e.description {
        item.insert("description".to_owned(), s(d.as_str()));
    }
    if let Some(t) = e.failing_since {
        item.insert("failing_since".to_owned(), n(t.0));
    }
    if let Some(t) = e.disabled_at {
        item.insert("disabled_at".to_owned(), n(t.0));
    }
    Ok(item)
}

fn outcome_name(outcome: DeliveryOutcome) -> &'static str {
    match outcome {
        DeliveryOutcome::Pending => "pending",
        DeliveryOutcome::Delivered => "delivered",
        DeliveryOutcome::GaveUp => "gave_up",
    }
}

#[derive(Clone)]
pub struct DynamoWebhookStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Where a recorded event's delivery is triggered (the webhooks queue).
    trigger: Option<SqsWorkQueue>,
}

impl DynamoWebhookStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self {
            client,
            table,
            trigger: None,
        }
    }

    pub fn with_webhook_trigger(mut self, queue: SqsWorkQueue) -> Self {
        self.trigger = Some(queue);
        self
    }

    async fn query(
        &self,
        pk: AttributeValue,
        prefix: Option<String>,
        forward: bool,
        limit: Option<usize>,
    ) -> Result<Vec<Item>, StoreError> {
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .expression_attribute_values(":pk", pk)
            .scan_index_forward(forward)
            .consistent_read(true);
        query = match prefix {
            Some(prefix) => query
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("pk = :pk"),
        };
        if let Some(limit) = limit {
            query = query.limit(i32::try_from(limit).unwrap_or(i32::MAX));
        }
        let out = query.send().await.map_err(unavailable)?;
        Ok(out.items.unwrap_or_default())
    }
}

#[async_trait]
impl WebhookStore for DynamoWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(endpoint_item(endpoint)?));
        write::put(put).await.map(|_| ())
    }

    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, endpoint_pk(tenant))
            .key(SORT_KEY, s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(endpoint_from_item).transpose()
    }

    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        self.query(endpoint_pk(tenant), None, false, None)
            .await?
            .iter()
            .map(endpoint_from_item)
            .collect()
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(endpoint_item(endpoint)?))
            .condition_expression("attribute_exists(pk)");
        Ok(write::put(put).await?.applied())
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, endpoint_pk(tenant))
            .key(SORT_KEY, s(id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.attributes.is_some())
    }

    async fn record_event(&self, event: &WebhookEvent) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(event_item(event)))
            .condition_expression("attribute_not_exists(pk)");
        if write::put(put).await?.applied() {
            relay(self.trigger.as_ref(), event).await;
        }
        Ok(())
    }

    async fn event(&self, event: &EventRef) -> Result<Option<WebhookEvent>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, event_pk(&event.tenant))
            .key(SORT_KEY, s(event.id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        Ok(Some(WebhookEvent {
            id: event.id.clone(),
            tenant: event.tenant.clone(),
            kind: EventKind::parse(need_s(&item, "kind")?).ok_or_else(|| corrupt("kind"))?,
            subject: need_s(&item, "subject")?.to_owned(),
            created_at: get_ts(&item, "created_at").ok_or_else(|| corrupt("created_at"))?,
            endpoint: get_s(&item, "endpoint").map(str::to_owned),
        }))
    }

    async fn delivery_states(&self, event: &EventRef) -> Result<Vec<DeliveryState>, StoreError> {
        let items = self
            .query(
                event_pk(&event.tenant),
                Some(format!("{}#D#", event.id)),
                true,
                None,
            )
            .await?;
        items
            .iter()
            .map(|item| {
                Ok(DeliveryState {
                    event_id: event.id.clone(),
                    endpoint_id: need_s(item, "endpoint_id")?.to_owned(),
                    attempts: get_n(item, "attempts")
                        .and_then(|a| u32::try_from(a).ok())
                        .unwrap_or(0),
                    first_attempt_at: get_ts(item, "first_attempt_at"),
                    next_at: get_ts(item, "next_at"),
                    outcome: match get_s(item, "outcome") {
                        Some("delivered") => DeliveryOutcome::Delivered,
                        Some("gave_up") => DeliveryOutcome::GaveUp,
                        _ => DeliveryOutcome::Pending,
                    },
                })
            })
            .collect()
    }

    async fn record_attempt(
        &self,
        tenant: &TenantId,
        attempt: Option<&Attempt>,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        let mut item = Item::from([
            (PARTITION_KEY.to_owned(), event_pk(tenant)),
            (
                SORT_KEY.to_owned(),
                s(format!("{}#D#{}", state.event_id, state.endpoint_id)),
            ),
            ("endpoint_id".to_owned(), s(state.endpoint_id.as_str())),
            ("attempts".to_owned(), n(i64::from(state.attempts))),
            ("outcome".to_owned(), s(outcome_name(state.outcome))),
        ]);
        if let Some(t) = state.first_attempt_at {
            item.insert("first_attempt_at".to_owned(), n(t.0));
            item.insert(TTL_ATTRIBUTE.to_owned(), ttl(t));
        }
        if let Some(t) = state.next_at {
            item.insert("next_at".to_owned(), n(t.0));
        }
        let state_put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .build()
            .map_err(unavailable)?;
        let mut steps = vec![TransactWriteItem::builder().put(state_put).build()];
        if let Some(a) = attempt {
            let mut item = Item::from([
                (PARTITION_KEY.to_owned(), attempt_pk(tenant, &a.endpoint_id)),
                (SORT_KEY.to_owned(), s(a.id.as_str())),
                ("event_id".to_owned(), s(a.event_id.as_str())),
                ("event_type".to_owned(), s(a.event_type.as_str())),
                ("attempt".to_owned(), n(i64::from(a.attempt))),
                (
                    "latency_ms".to_owned(),
                    n(i64::try_from(a.latency_ms).unwrap_or(i64::MAX)),
                ),
                ("succeeded".to_owned(), AttributeValue::Bool(a.succeeded)),
                ("created_at".to_owned(), n(a.created_at.0)),
                (TTL_ATTRIBUTE.to_owned(), ttl(a.created_at)),
            ]);
            if let Some(code) = a.status_code {
                item.insert("status_code".to_owned(), n(i64::from(code)));
            }
            if let Some(error) = &a.error {
                item.insert("error".to_owned(), s(error.as_str()));
            }
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map_err(unavailable)?;
            steps.push(TransactWriteItem::builder().put(put).build());
        }
        write::transact(&self.client, steps).await.map(|_| ())
    }

    async fn attempts(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        let items = self
            .query(attempt_pk(tenant, endpoint_id), None, false, Some(limit))
            .await?;
        items
            .iter()
            .map(|item| {
                Ok(Attempt {
                    id: need_s(item, SORT_KEY)?.to_owned(),
                    endpoint_id: endpoint_id.to_owned(),
                    event_id: need_s(item, "event_id")?.to_owned(),
                    event_type: EventKind::parse(need_s(item, "event_type")?)
                        .ok_or_else(|| corrupt("event_type"))?,
                    attempt: get_n(item, "attempt")
                        .and_then(|a| u32::try_from(a).ok())
                        .unwrap_or(0),
                    status_code: get_n(item, "status_code").and_then(|c| u16::try_from(c).ok()),
                    latency_ms: get_n(item, "latency_ms")
                        .and_then(|l| u64::try_from(l).ok())
                        .unwrap_or(0),
                    error: get_s(item, "error").map(str::to_owned),
                    succeeded: matches!(item.get("succeeded"), Some(AttributeValue::Bool(true))),
                    created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
                })
            })
            .collect()
    }

    async fn undelivered(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<EventRef>, StoreError> {
        let keys = keys_due(&self.client, &self.table, RECONCILE_PREFIX, before, limit).await?;
        Ok(keys
            .into_iter()
            .filter_map(|(pk, id)| {
                Some(EventRef {
                    tenant: tenant_of_pk(&pk, "EV")?,
                    id,
                })
            })
            .collect())
    }

    async fn settle_event(&self, event: &EventRef) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, event_pk(&event.tenant))
            .key(SORT_KEY, s(event.id.as_str()))
            .condition_expression("attribute_exists(pk)")
            .update_expression("REMOVE rc_pk, rc_at");
        write::update(update).await.map(|_| ())
    }
}

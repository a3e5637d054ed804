//! Batches in DynamoDB: the `BatchStore` port. What each transition decides (whether a batch
//! takes results, a chunk claim's answers, a finalize lease, a cancel) is `prism_core::batches::
//! decisions`; this adapter reads, asks, and writes conditionally on what it read.
//!
//! Layout, all in the one table:
//! - a batch is one item under its owner's partition, `pk = T#<tenant>#B`, `sk = <batch id>`.
//!   Batch ids sort by creation time, so listing newest first is a reverse query in key order.
//!   Counters (`total`, `completed`, `failed`, `chunks`, `chunks_done`) and the five usage
//!   fields (`input_tokens` … `total_tokens`) are numbers, so a checkpoint can `ADD` to them;
//!   `metadata`, `errors` and `finalize` (the finalizer's [`FinalizeLease`]) are JSON strings,
//!   and the finalizer's token is repeated as `finalize_token` for conditions to name. Times
//!   are epoch milliseconds.
//! - a chunk is one item per chunk under the batch, `pk = B#<batch id>`, `sk = C#<index:06>`:
//!   `start`, `end`, `lines`, `cursor`, `parts` (a list of maps, appended with `list_append`),
//!   `done` (bool), and while claimed `lease_token` / `lease_expires_at`.
//! - an unfinished batch is in the sparse `reconcile` index: `rc_pk = RB#<0..15>` (sharded by
//!   the id's last character) and `rc_at = created_at`, both removed at the terminal
//!   transitions. Its shards are apart from the jobs' `R#<n>` ones, so neither reconciler query
//!   wades through (or is starved by) the other's items.
//!
//! Every transition is a conditional write. A write touching a chunk and its batch (claim,
//! checkpoint, renew, complete) is one `TransactWriteItems`, so a part and its counts land
//! together or not at all. Transactions on the busy batch item collide with each other; a
//! cancellation for contention (not for a condition) is retried here, never reported as a lost
//! lease.

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
};
use futures::StreamExt;
use prism_core::batches::decisions::{self, CancelDecision};
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, BatchStatus, Chunk, ChunkClaim,
    ChunkWrite, ClaimPurpose, FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use prism_core::list::Page;
use prism_core::ports::{BatchResult, BatchStore, Lease};
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::webhooks::{EventKind, WebhookEvent};
use prism_core::{BatchId, StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, RC_AT, RC_PK, RECONCILE_INDEX, RECONCILE_SHARDS, SORT_KEY, get_s, n,
    reconcile_shard, reconcile_shard_name, s, unavailable,
};
use crate::queue::SqsWorkQueue;
use crate::usage;
use crate::webhooks::{event_put, relay};
use crate::write::{self, Written};
use items::{
    RECONCILE_PREFIX, batch_from_item, batch_key, batch_pk, num, status_value, tenant_of, to_json,
    usage_fields,
};

mod chunks;
mod items;

/// Chunk items written at once while planning.
const CHUNK_WRITES_IN_FLIGHT: usize = 16;
/// Reads-then-writes of a claim whose item changed between the read and the write.
const CLAIM_TRIES: u32 = 4;

/// A condition expression and the values it binds.
type Condition = (String, Vec<(&'static str, AttributeValue)>);

/// `#s IN (...)` over the batch statuses `keep` picks (binding `:w0`..): a status rule of
/// core's as a condition, for writes that do not read first.
fn status_in(keep: impl Fn(BatchStatus) -> bool) -> Condition {
    const PLACEHOLDERS: [&str; BatchStatus::ALL.len()] =
        [":w0", ":w1", ":w2", ":w3", ":w4", ":w5", ":w6", ":w7"];
    let values: Vec<(&'static str, AttributeValue)> = PLACEHOLDERS
        .iter()
        .zip(BatchStatus::ALL.into_iter().filter(|status| keep(*status)))
        .map(|(placeholder, status)| (*placeholder, status_value(status)))
        .collect();
    let listed: Vec<&str> = values.iter().map(|(p, _)| *p).collect();
    (format!("#s IN ({})", listed.join(", ")), values)
}

#[derive(Clone)]
pub struct DynamoBatchStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Where a terminal write's webhook event is triggered (the webhooks queue).
    webhook_trigger: Option<SqsWorkQueue>,
}

impl DynamoBatchStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self {
            client,
            table,
            webhook_trigger: None,
        }
    }

    pub fn with_webhook_trigger(mut self, queue: SqsWorkQueue) -> Self {
        self.webhook_trigger = Some(queue);
        self
    }

    /// Applies a terminal update together with its webhook event (the outbox), then triggers
    /// the event's delivery.
    async fn finish_with_event(
        &self,
        batch: &BatchRef,
        kind: EventKind,
        update: &UpdateItemFluentBuilder,
        counts: &[UsageCount],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let event = WebhookEvent::for_subject(&batch.tenant, kind, batch.id.as_str(), now);
        let mut others =
            usage::counter_updates(&self.table, &batch.tenant, batch.id.as_str(), counts)?;
        others.push(event_put(&self.table, &event)?);
        let applied = write::update_with(&self.client, update, others).await?;
        if applied {
            relay(self.webhook_trigger.as_ref(), &event).await;
        }
        Ok(applied)
    }

    async fn batch_item(&self, batch: &BatchRef) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(batch_key(batch)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn batch(&self, batch: &BatchRef) -> Result<Option<Batch>, StoreError> {
        self.batch_item(batch)
            .await?
            .as_ref()
            .map(batch_from_item)
            .transpose()
    }

    /// An update of the batch item; every one names its status.
    fn update_batch(&self, batch: &BatchRef) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(batch_key(batch)))
            .expression_attribute_names("#s", "status")
    }
}

#[async_trait]
impl BatchStore for DynamoBatchStore {
    async fn create(&self, batch: &NewBatch) -> Result<(), StoreError> {
        let mut item = batch_key(&batch.batch_ref());
        item.extend([
            ("status".to_owned(), status_value(BatchStatus::Validating)),
            ("input_file_id".to_owned(), s(batch.input_file_id.as_str())),
            ("endpoint".to_owned(), s(batch.endpoint.path())),
            (
                "completion_window".to_owned(),
                s(batch.completion_window.clone()),
            ),
            ("created_at".to_owned(), n(batch.created_at.0)),
            ("expires_at".to_owned(), n(batch.expires_at.0)),
            ("total".to_owned(), n(0)),
            ("completed".to_owned(), n(0)),
            ("failed".to_owned(), n(0)),
            ("chunks".to_owned(), n(0)),
            ("chunks_done".to_owned(), n(0)),
            (
                RC_PK.to_owned(),
                reconcile_shard(RECONCILE_PREFIX, batch.id.as_str()),
            ),
            (RC_AT.to_owned(), n(batch.created_at.0)),
        ]);
        for (name, value) in usage_fields(&Usage::default()) {
            item.insert(name.to_owned(), num(value));
        }
        if let Some(metadata) = &batch.metadata {
            item.insert("metadata".into(), to_json(metadata)?);
        }
        if let Some(after) = batch.output_expires_after {
            item.insert(
                "output_expires_after".into(),
                num(u64::try_from(after.as_millis()).unwrap_or(u64::MAX)),
            );
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        // Ids are fresh, so a refusal is this same put, applied by an earlier try whose answer
        // was lost (the SDK sent it again): created all the same.
        write::put(put).await?;
        Ok(())
    }

    async fn withdraw(&self, batch: &BatchRef) -> Result<bool, StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(batch_key(batch)))
            .condition_expression("#s = :validating")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":validating", status_value(BatchStatus::Validating));
        // A refusal after a lost answer is this delete, applied already (the item is gone, and
        // nothing else deletes a validating batch); either way, false is only "not withdrawn".
        Ok(write::delete(delete).await?.applied())
    }

    async fn get(&self, tenant: &TenantId, id: &BatchId) -> Result<Option<Batch>, StoreError> {
        self.batch(&BatchRef {
            tenant: tenant.clone(),
            id: id.clone(),
        })
        .await
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&BatchId>,
    ) -> Result<Page<Batch>, StoreError> {
        let mut start: Option<Item> = after.map(|after| {
            batch_key(&BatchRef {
                tenant: tenant.clone(),
                id: after.clone(),
            })
        });
        let want = limit + 1;
        let mut items: Vec<Item> = Vec::new();
        // No filter, but a page also ends at 1 MB: read on until enough items came.
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", batch_pk(tenant))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from((want - items.len()).min(1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if items.len() < want => start = Some(key),
                _ => break,
            }
        }
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page {
            items: items
                .iter()
                .map(batch_from_item)
                .collect::<Result<_, _>>()?,
            has_more,
        })
    }

    async fn plan(
        &self,
        batch: &BatchRef,
        chunks: &[ChunkPlan],
        total: u64,
        model: Option<&str>,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // The chunks go first and the transition last (a batch may have more chunks than a
        // transaction holds items): a crash in between leaves a batch still validating, whose
        // next planning finds its chunk items already there, never one in progress without them.
        let seen = match self.batch(batch).await? {
            Some(current) if decisions::planning_settles(current.status) => current.status,
            _ => return Ok(false),
        };
        let puts: Vec<_> = chunks
            .iter()
            .map(|plan| self.put_chunk(batch, plan))
            .collect();
        let writes: Vec<Result<(), StoreError>> = futures::stream::iter(puts)
            .buffer_unordered(CHUNK_WRITES_IN_FLIGHT)
            .collect()
            .await;
        writes.into_iter().collect::<Result<(), _>>()?;

        // Lands only on the status planning was allowed to settle.
        let mut update = self
            .update_batch(batch)
            .condition_expression("#s = :seen")
            .expression_attribute_names("#t", "total")
            .expression_attribute_values(":seen", status_value(seen))
            .expression_attribute_values(":in_progress", status_value(BatchStatus::InProgress))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":total", num(total))
            .expression_attribute_values(":chunks", num(chunks.len() as u64));
        let mut set = "SET #s = :in_progress, in_progress_at = :now, #t = :total, chunks = :chunks"
            .to_owned();
        if let Some(model) = model {
            update = update.expression_attribute_values(":model", s(model));
            set.push_str(", model = :model");
        }
        let update = update.update_expression(set);
        Ok(write::update(update).await?.applied())
    }

    async fn fail(
        &self,
        batch: &BatchRef,
        errors: &BatchErrors,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // Not read first: a validation failure's one write, on the statuses core lets planning
        // settle.
        let (condition, values) = status_in(decisions::planning_settles);
        let mut update = self
            .update_batch(batch)
            .update_expression(
                "SET #s = :failed, failed_at = :now, errors = :errors REMOVE rc_pk, rc_at",
            )
            .condition_expression(condition);
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        let update = update
            .expression_attribute_values(":failed", status_value(BatchStatus::Failed))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":errors", to_json(errors)?);
        self.finish_with_event(batch, EventKind::BatchFailed, &update, &[], now)
            .await
    }

    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        purpose: ClaimPurpose,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError> {
        self.take_chunk(batch, chunk, lease, purpose, now).await
    }

    async fn checkpoint(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        part: &Part,
        lease_until: Timestamp,
        now: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        self.commit_part(batch, chunk, token, part, lease_until, now)
            .await
    }

    async fn complete_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        self.mark_chunk_done(batch, chunk, token).await
    }

    async fn renew_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        self.renew_chunk_lease(batch, chunk, token, lease_until)
            .await
    }

    async fn release_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        self.give_up_chunk(batch, chunk, token).await
    }

    async fn chunks(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError> {
        self.chunk_items(batch).await
    }

    async fn request_cancel(
        &self,
        tenant: &TenantId,
        id: &BatchId,
        now: Timestamp,
    ) -> Result<BatchCancelOutcome, StoreError> {
        let batch = BatchRef {
            tenant: tenant.clone(),
            id: id.clone(),
        };
        let (condition, values) = status_in(BatchStatus::is_cancellable);
        let mut update = self
            .update_batch(&batch)
            .update_expression("SET #s = :cancelling, cancelling_at = :now")
            .condition_expression(condition);
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        let update = update
            .expression_attribute_values(":cancelling", status_value(BatchStatus::Cancelling))
            .expression_attribute_values(":now", n(now.0))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match write::update(update).await? {
            Written::Applied(item) => Ok(BatchCancelOutcome::Accepted(batch_from_item(
                &item.unwrap_or_default(),
            )?)),
            Written::Refused(seen) => {
                match decisions::cancel_decision(
                    seen.as_ref().map(batch_from_item).transpose()?,
                    now,
                ) {
                    CancelDecision::Answer(outcome) => Ok(outcome),
                    // Refused, yet cancellable as seen: moved back in between, which no
                    // transition does.
                    CancelDecision::Cancel(_) => Err(StoreError::Unavailable(format!(
                        "cancel of {id} raced with an unexpected transition"
                    ))),
                }
            }
        }
    }

    async fn claim_finalize(
        &self,
        batch: &BatchRef,
        lease: &FinalizeLease,
        now: Timestamp,
    ) -> Result<Option<Batch>, StoreError> {
        let mut seen = self.batch_item(batch).await?;
        for _ in 0..CLAIM_TRIES {
            let Some(item) = seen.take() else {
                return Ok(None);
            };
            let current = batch_from_item(&item)?;
            let Some(held) = decisions::finalize_lease(&current, lease, now) else {
                return Ok(None);
            };
            let mut update = self
                .update_batch(batch)
                .update_expression(
                    "SET #s = :finalizing, finalizing_at = if_not_exists(finalizing_at, :now), \
                     finalize = :finalize, finalize_token = :token",
                )
                .expression_attribute_values(":finalizing", status_value(BatchStatus::Finalizing))
                .expression_attribute_values(":now", n(now.0))
                .expression_attribute_values(":finalize", to_json(&held)?)
                .expression_attribute_values(":token", s(held.token.clone()))
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            // Holds only on the state the lease was chosen from.
            update = match (current.status, &current.finalize) {
                (BatchStatus::Finalizing, Some(previous)) => update
                    .condition_expression("#s = :finalizing AND finalize_token = :previous")
                    .expression_attribute_values(":previous", s(previous.token.clone())),
                (status, _) => update
                    .condition_expression("#s = :seen")
                    .expression_attribute_values(":seen", status_value(status)),
            };
            match write::update(update).await? {
                Written::Applied(item) => {
                    return Ok(Some(batch_from_item(&item.unwrap_or_default())?));
                }
                // Changed since it was read: decide again on what the write saw.
                Written::Refused(old) => seen = old,
            }
        }
        Err(StoreError::Unavailable(format!(
            "finalize claim of {} kept losing races",
            batch.id
        )))
    }

    async fn renew_finalize(
        &self,
        batch: &BatchRef,
        token: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        // Read, ask core, write while the finalizer is as read: once per third of a lease.
        let Some(current) = self.batch(batch).await? else {
            return Ok(false);
        };
        let Some(renewed) = decisions::renewed_finalize(&current, token, until) else {
            return Ok(false);
        };
        let update = self
            .update_batch(batch)
            .update_expression("SET finalize = :finalize")
            .condition_expression("#s = :finalizing AND finalize_token = :token")
            .expression_attribute_values(":finalize", to_json(&renewed)?)
            .expression_attribute_values(":finalizing", status_value(BatchStatus::Finalizing))
            .expression_attribute_values(":token", s(token));
        Ok(write::update(update).await?.applied())
    }

    async fn finish(
        &self,
        batch: &BatchRef,
        token: &str,
        result: &BatchResult,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let stamp = match result.outcome {
            BatchOutcome::Completed => "completed_at",
            BatchOutcome::Cancelled => "cancelled_at",
            BatchOutcome::Expired => "expired_at",
        };
        let mut set = vec![
            "#s = :outcome".to_owned(),
            format!("{stamp} = :now"),
            "#t = :total".to_owned(),
            "completed = :completed".to_owned(),
            "failed = :failed".to_owned(),
        ];
        let mut remove = vec!["finalize", "finalize_token", RC_PK, RC_AT];
        // Core's `finalize_holds` decides on the batch as read (once per batch, so the read
        // costs little); the write lands only while the status and finalizer are as read.
        let Some(current) = self.batch(batch).await? else {
            return Ok(false);
        };
        if !decisions::finalize_holds(&current, token) {
            return Ok(false);
        }
        let Some(holder) = current.finalize.as_ref().map(|lease| lease.token.clone()) else {
            return Ok(false);
        };
        let mut update = self
            .update_batch(batch)
            .condition_expression("#s = :seen AND finalize_token = :holder")
            .expression_attribute_names("#t", "total")
            .expression_attribute_values(":seen", status_value(current.status))
            .expression_attribute_values(":holder", s(holder))
            .expression_attribute_values(":outcome", status_value(result.outcome.status()))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":total", num(result.counts.total))
            .expression_attribute_values(":completed", num(result.counts.completed))
            .expression_attribute_values(":failed", num(result.counts.failed));
        for (name, value) in usage_fields(&result.usage) {
            set.push(format!("{name} = :{name}"));
            update = update.expression_attribute_values(format!(":{name}"), num(value));
        }
        let by_model = serde_json::to_string(&result.usage_by_model)
            .map_err(|e| StoreError::Corrupt(format!("usage by model: {e}")))?;
        set.push("usage_by_model = :usage_by_model".to_owned());
        update = update.expression_attribute_values(":usage_by_model", s(by_model));
        for (name, file) in [
            ("output_file_id", &result.output_file_id),
            ("error_file_id", &result.error_file_id),
        ] {
            match file {
                Some(id) => {
                    set.push(format!("{name} = :{name}"));
                    update = update.expression_attribute_values(format!(":{name}"), s(id.as_str()));
                }
                None => remove.push(name),
            }
        }
        let update = update.update_expression(format!(
            "SET {} REMOVE {}",
            set.join(", "),
            remove.join(", ")
        ));
        let kind = EventKind::of_batch(result.outcome);
        self.finish_with_event(batch, kind, &update, &result.counted, now)
            .await
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        let batches = [UsageKind::Batch];
        usage::read(&self.client, &self.table, tenant, from, to, &batches).await
    }

    async fn count_active(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let active = status_in(|status| !status.is_terminal());
        let mut count = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression(active.0.clone())
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":pk", batch_pk(tenant))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (name, value) in &active.1 {
                query = query.expression_attribute_values(*name, value.clone());
            }
            let out = query.send().await.map_err(unavailable)?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(count)
    }

    async fn unfinished(&self, limit: usize) -> Result<Vec<BatchRef>, StoreError> {
        let mut found = Vec::new();
        for shard in 0..RECONCILE_SHARDS {
            let mut start: Option<Item> = None;
            loop {
                let remaining = limit.saturating_sub(found.len());
                if remaining == 0 {
                    return Ok(found);
                }
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(RECONCILE_INDEX)
                    .key_condition_expression("rc_pk = :shard")
                    .expression_attribute_values(
                        ":shard",
                        reconcile_shard_name(RECONCILE_PREFIX, shard),
                    )
                    .limit(i32::try_from(remaining).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start.take())
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in out.items.unwrap_or_default() {
                    let parsed = get_s(&item, PARTITION_KEY)
                        .and_then(tenant_of)
                        .zip(get_s(&item, SORT_KEY).and_then(BatchId::parse));
                    if let Some((tenant, id)) = parsed {
                        found.push(BatchRef { tenant, id });
                    }
                }
                match out.last_evaluated_key {
                    Some(key) => start = Some(key),
                    None => break,
                }
            }
        }
        Ok(found)
    }

    async fn record_provider_counts(
        &self,
        batch: &BatchRef,
        group: u32,
        counts: &RequestCounts,
    ) -> Result<bool, StoreError> {
        // One attribute per group (`native_<n>`, JSON), so a look replaces its own group's
        // counts with one unconditional SET and never reads the others'.
        let json = serde_json::to_string(counts).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (condition, values) = status_in(|status| !status.is_terminal());
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(batch_key(batch)))
            .update_expression("SET #g = :counts")
            .condition_expression(format!("attribute_exists(pk) AND {condition}"))
            .expression_attribute_names("#s", "status")
            .expression_attribute_names("#g", items::native_counts_attribute(group))
            .expression_attribute_values(":counts", AttributeValue::S(json));
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        Ok(write::update(update).await?.applied())
    }
}

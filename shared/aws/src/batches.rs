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

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, ReturnValue, ReturnValuesOnConditionCheckFailure, Select,
    TransactWriteItem, Update,
};
use futures::StreamExt;
use prism_core::batches::decisions::{self, CancelDecision};
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::{
    Batch, BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, BatchStatus, Chunk, ChunkClaim,
    ChunkWrite, FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use prism_core::list::Page;
use prism_core::ports::{BatchResult, BatchStore, Lease};
use prism_core::{BatchId, FileId, StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, RC_AT, RC_PK, RECONCILE_INDEX, RECONCILE_SHARDS, SORT_KEY, get_n, get_s,
    get_ts, n, need_s, reconcile_shard, reconcile_shard_name, s, tenant_of_pk, tenant_pk,
    unavailable,
};
use crate::write::{self, Written};

/// Chunk items written at once while planning.
const CHUNK_WRITES_IN_FLIGHT: usize = 16;
/// Reads-then-writes of a claim whose item changed between the read and the write.
const CLAIM_TRIES: u32 = 4;

#[derive(Clone)]
pub struct DynamoBatchStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn batch_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "B")
}

/// The tenant of a partition of this kind.
fn tenant_of(pk: &str) -> Option<TenantId> {
    tenant_of_pk(pk, "B")
}

fn batch_key(batch: &BatchRef) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), batch_pk(&batch.tenant)),
        (SORT_KEY.to_owned(), s(batch.id.as_str())),
    ])
}

fn chunk_pk(id: &BatchId) -> AttributeValue {
    s(format!("B#{id}"))
}

fn chunk_key(batch: &BatchRef, index: u32) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), chunk_pk(&batch.id)),
        (SORT_KEY.to_owned(), s(format!("C#{index:06}"))),
    ])
}

/// Batches' shards of the reconcile index, apart from the jobs' ones.
const RECONCILE_PREFIX: &str = "RB#";

/// Counts are `u64` in the core and signed in [`n`]; nothing real comes near the limit.
fn num(v: u64) -> AttributeValue {
    n(i64::try_from(v).unwrap_or(i64::MAX))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn status_value(status: BatchStatus) -> AttributeValue {
    s(status.as_str())
}

/// The usage fields by attribute name, as a batch and a part hold them.
fn usage_fields(usage: &Usage) -> [(&'static str, u64); 5] {
    [
        ("input_tokens", usage.input_tokens),
        ("cached_tokens", usage.cached_tokens),
        ("output_tokens", usage.output_tokens),
        ("reasoning_tokens", usage.reasoning_tokens),
        ("total_tokens", usage.total_tokens),
    ]
}

/// Reads a non-negative number. Absent reads as zero, which is what `ADD` assumes of an absent
/// counter too.
fn count_of(item: &Item, name: &str, what: &str) -> Result<u64, StoreError> {
    get_n(item, name).map_or(Ok(0), |v| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} has a bad '{name}'")))
    })
}

fn small_count_of(item: &Item, name: &str, what: &str) -> Result<u32, StoreError> {
    u32::try_from(count_of(item, name, what)?)
        .map_err(|_| StoreError::Corrupt(format!("{what} has a bad '{name}'")))
}

fn usage_of(item: &Item, what: &str) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: count_of(item, "input_tokens", what)?,
        cached_tokens: count_of(item, "cached_tokens", what)?,
        output_tokens: count_of(item, "output_tokens", what)?,
        reasoning_tokens: count_of(item, "reasoning_tokens", what)?,
        total_tokens: count_of(item, "total_tokens", what)?,
    })
}

fn json_of<T: serde::de::DeserializeOwned>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StoreError> {
    get_s(item, name)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| StoreError::Corrupt(format!("batch item has a bad '{name}'")))
}

fn batch_from_item(item: &Item) -> Result<Batch, StoreError> {
    const WHAT: &str = "batch item";
    let corrupt = |what: &str| StoreError::Corrupt(format!("batch item has a bad '{what}'"));
    let file_id = |name: &str| {
        get_s(item, name)
            .map(|t| FileId::parse(t).ok_or_else(|| corrupt(name)))
            .transpose()
    };
    Ok(Batch {
        id: BatchId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of(need_s(item, PARTITION_KEY)?).ok_or_else(|| corrupt(PARTITION_KEY))?,
        input_file_id: FileId::parse(need_s(item, "input_file_id")?)
            .ok_or_else(|| corrupt("input_file_id"))?,
        endpoint: need_s(item, "endpoint")?.to_owned(),
        completion_window: need_s(item, "completion_window")?.to_owned(),
        metadata: json_of(item, "metadata")?,
        output_expires_after: get_n(item, "output_expires_after")
            .map(|ms| u64::try_from(ms).map_err(|_| corrupt("output_expires_after")))
            .transpose()?
            .map(Duration::from_millis),
        status: BatchStatus::parse(need_s(item, "status")?).ok_or_else(|| corrupt("status"))?,
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        expires_at: get_ts(item, "expires_at").ok_or_else(|| corrupt("expires_at"))?,
        in_progress_at: get_ts(item, "in_progress_at"),
        finalizing_at: get_ts(item, "finalizing_at"),
        completed_at: get_ts(item, "completed_at"),
        failed_at: get_ts(item, "failed_at"),
        expired_at: get_ts(item, "expired_at"),
        cancelling_at: get_ts(item, "cancelling_at"),
        cancelled_at: get_ts(item, "cancelled_at"),
        counts: RequestCounts {
            total: count_of(item, "total", WHAT)?,
            completed: count_of(item, "completed", WHAT)?,
            failed: count_of(item, "failed", WHAT)?,
        },
        usage: usage_of(item, WHAT)?,
        errors: json_of::<BatchErrors>(item, "errors")?,
        output_file_id: file_id("output_file_id")?,
        error_file_id: file_id("error_file_id")?,
        model: get_s(item, "model").map(str::to_owned),
        chunks: small_count_of(item, "chunks", WHAT)?,
        chunks_done: small_count_of(item, "chunks_done", WHAT)?,
        finalize: json_of::<FinalizeLease>(item, "finalize")?,
    })
}

fn part_value(part: &Part) -> AttributeValue {
    let mut map = Item::from([
        ("key".to_owned(), s(part.key.clone())),
        ("lines".to_owned(), num(part.lines.into())),
        ("completed".to_owned(), num(part.completed.into())),
        ("failed".to_owned(), num(part.failed.into())),
        ("done".to_owned(), s(part.done.clone())),
    ]);
    for (name, value) in usage_fields(&part.usage) {
        map.insert(name.to_owned(), num(value));
    }
    AttributeValue::M(map)
}

fn part_from_value(value: &AttributeValue) -> Result<Part, StoreError> {
    const WHAT: &str = "chunk part";
    let map = value
        .as_m()
        .map_err(|_| StoreError::Corrupt("chunk part is not a map".into()))?;
    Ok(Part {
        key: need_s(map, "key")?.to_owned(),
        lines: small_count_of(map, "lines", WHAT)?,
        completed: small_count_of(map, "completed", WHAT)?,
        failed: small_count_of(map, "failed", WHAT)?,
        usage: usage_of(map, WHAT)?,
        done: get_s(map, "done").unwrap_or_default().to_owned(),
    })
}

fn chunk_from_item(item: &Item) -> Result<Chunk, StoreError> {
    const WHAT: &str = "chunk item";
    let corrupt = |what: &str| StoreError::Corrupt(format!("chunk item has a bad '{what}'"));
    let index = need_s(item, SORT_KEY)?
        .strip_prefix("C#")
        .and_then(|i| i.parse().ok())
        .ok_or_else(|| corrupt(SORT_KEY))?;
    let parts = match item.get("parts") {
        None => Vec::new(),
        Some(list) => list
            .as_l()
            .map_err(|_| corrupt("parts"))?
            .iter()
            .map(part_from_value)
            .collect::<Result<_, _>>()?,
    };
    Ok(Chunk {
        plan: ChunkPlan {
            index,
            start: get_n(item, "start")
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| corrupt("start"))?,
            end: get_n(item, "end")
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| corrupt("end"))?,
            lines: small_count_of(item, "lines", WHAT)?,
        },
        cursor: small_count_of(item, "cursor", WHAT)?,
        parts,
        done: match item.get("done") {
            None => false,
            Some(v) => *v.as_bool().map_err(|_| corrupt("done"))?,
        },
        lease_token: get_s(item, "lease_token").map(str::to_owned),
        lease_expires_at: get_ts(item, "lease_expires_at"),
    })
}

fn chunk_item(batch: &BatchRef, plan: &ChunkPlan) -> Item {
    let mut item = chunk_key(batch, plan.index);
    item.extend([
        ("start".to_owned(), num(plan.start)),
        ("end".to_owned(), num(plan.end)),
        ("lines".to_owned(), num(plan.lines.into())),
        ("cursor".to_owned(), n(0)),
        ("parts".to_owned(), AttributeValue::L(Vec::new())),
        ("done".to_owned(), AttributeValue::Bool(false)),
    ]);
    item
}

/// One item of a transaction, keyed and with its expression's names and values.
struct Step<'a> {
    key: Item,
    condition: &'a str,
    names: &'a [(&'a str, &'a str)],
    values: Vec<(&'a str, AttributeValue)>,
}

impl Step<'_> {
    fn names(&self) -> Option<HashMap<String, String>> {
        // DynamoDB rejects an empty map where it accepts none.
        (!self.names.is_empty()).then(|| {
            self.names
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        })
    }

    fn values(&mut self) -> Option<Item> {
        (!self.values.is_empty()).then(|| {
            self.values
                .drain(..)
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        })
    }
}

impl DynamoBatchStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
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

    async fn chunk(&self, batch: &BatchRef, index: u32) -> Result<Option<Chunk>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(chunk_key(batch, index)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(chunk_from_item).transpose()
    }

    /// An update of the batch item; every one names its status.
    fn update_batch(&self, batch: &BatchRef) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(batch_key(batch)))
            .expression_attribute_names("#s", "status")
    }

    fn update_step(
        &self,
        update: &str,
        mut step: Step<'_>,
    ) -> Result<TransactWriteItem, StoreError> {
        let built = Update::builder()
            .table_name(&self.table)
            .set_key(Some(step.key.clone()))
            .update_expression(update)
            .condition_expression(step.condition)
            .set_expression_attribute_names(step.names())
            .set_expression_attribute_values(step.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().update(built).build())
    }

    fn check_step(&self, mut step: Step<'_>) -> Result<TransactWriteItem, StoreError> {
        let built = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(step.key.clone()))
            .condition_expression(step.condition)
            .set_expression_attribute_names(step.names())
            .set_expression_attribute_values(step.values())
            .build()
            .map_err(unavailable)?;
        Ok(TransactWriteItem::builder().condition_check(built).build())
    }

    /// A check that the batch takes results at `now`.
    fn batch_takes_results(
        &self,
        batch: &BatchRef,
        now: Timestamp,
    ) -> Result<TransactWriteItem, StoreError> {
        self.check_step(Step {
            key: batch_key(batch),
            condition: "#s = :in_progress AND expires_at > :now",
            names: &[("#s", "status")],
            values: vec![
                (":in_progress", status_value(BatchStatus::InProgress)),
                (":now", n(now.0)),
            ],
        })
    }

    /// The batch-item condition under which a holder's write answers `answer`: its status is one
    /// core's `chunk_write_in` maps to `answer` (and, for a commit while running, the window is
    /// open, as `commit_answer` has it). Its values bind `:w0`.. and `:now`.
    fn chunk_write_condition(
        answer: ChunkWrite,
        commit_at: Option<Timestamp>,
    ) -> (String, Vec<(&'static str, AttributeValue)>) {
        const PLACEHOLDERS: [&str; BatchStatus::ALL.len()] =
            [":w0", ":w1", ":w2", ":w3", ":w4", ":w5", ":w6", ":w7"];
        let mut values: Vec<(&'static str, AttributeValue)> = PLACEHOLDERS
            .iter()
            .zip(
                BatchStatus::ALL
                    .into_iter()
                    .filter(|status| decisions::chunk_write_in(*status) == answer),
            )
            .map(|(placeholder, status)| (*placeholder, status_value(status)))
            .collect();
        let listed: Vec<&str> = values.iter().map(|(p, _)| *p).collect();
        let mut condition = format!("#s IN ({})", listed.join(", "));
        if let (ChunkWrite::Running, Some(now)) = (answer, commit_at) {
            condition.push_str(" AND expires_at > :now");
            values.push((":now", n(now.0)));
        }
        (condition, values)
    }

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        write::transact(&self.client, items).await
    }

    /// Writes a chunk item unless one is there: a replanning never resets a chunk's progress.
    async fn put_chunk(&self, batch: &BatchRef, plan: &ChunkPlan) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(chunk_item(batch, plan)))
            .condition_expression("attribute_not_exists(pk)");
        // Refused means it is there already: planned before, progress kept.
        write::put(put).await.map(|_| ())
    }
}

#[async_trait]
impl BatchStore for DynamoBatchStore {
    async fn create(&self, batch: &NewBatch) -> Result<(), StoreError> {
        let mut item = batch_key(&batch.batch_ref());
        item.extend([
            ("status".to_owned(), status_value(BatchStatus::Validating)),
            ("input_file_id".to_owned(), s(batch.input_file_id.as_str())),
            ("endpoint".to_owned(), s(batch.endpoint.clone())),
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
        match self.batch(batch).await? {
            Some(current) if current.status == BatchStatus::Validating => {}
            _ => return Ok(false),
        }
        let puts: Vec<_> = chunks
            .iter()
            .map(|plan| self.put_chunk(batch, plan))
            .collect();
        let writes: Vec<Result<(), StoreError>> = futures::stream::iter(puts)
            .buffer_unordered(CHUNK_WRITES_IN_FLIGHT)
            .collect()
            .await;
        writes.into_iter().collect::<Result<(), _>>()?;

        let mut update = self
            .update_batch(batch)
            .condition_expression("#s = :validating")
            .expression_attribute_names("#t", "total")
            .expression_attribute_values(":validating", status_value(BatchStatus::Validating))
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
        let update = self
            .update_batch(batch)
            .update_expression(
                "SET #s = :failed, failed_at = :now, errors = :errors REMOVE rc_pk, rc_at",
            )
            .condition_expression("#s = :validating")
            .expression_attribute_values(":validating", status_value(BatchStatus::Validating))
            .expression_attribute_values(":failed", status_value(BatchStatus::Failed))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":errors", to_json(errors)?);
        Ok(write::update(update).await?.applied())
    }

    async fn claim_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError> {
        for _ in 0..CLAIM_TRIES {
            let current = self.batch(batch).await?;
            let record = self.chunk(batch, chunk).await?;
            let (current, record) = match decisions::chunk_claim(current, record, lease, now) {
                Ok(taken) => taken,
                Err(refusal) => return Ok(refusal),
            };
            // The claim holds only if the chunk is as read: a stale holder may still commit a
            // part under its expired lease, and the claimant must resume after it.
            let take = self.update_step(
                "SET lease_token = :token, lease_expires_at = :until",
                Step {
                    key: chunk_key(batch, chunk),
                    condition: "done = :false AND #c = :cursor AND size(parts) = :parts \
                         AND (attribute_not_exists(lease_token) OR lease_expires_at <= :now)",
                    names: &[("#c", "cursor")],
                    values: vec![
                        (":token", s(lease.token.clone())),
                        (":until", n(lease.expires_at.0)),
                        (":false", AttributeValue::Bool(false)),
                        (":cursor", num(record.cursor.into())),
                        (":parts", num(record.parts.len() as u64)),
                        (":now", n(now.0)),
                    ],
                },
            )?;
            if self
                .transact(vec![self.batch_takes_results(batch, now)?, take])
                .await?
            {
                return Ok(ChunkClaim::Claimed {
                    batch: Box::new(current),
                    chunk: record,
                });
            }
            // Something changed since the reads: read again and answer from that.
        }
        Err(StoreError::Unavailable(format!(
            "claim of chunk {chunk} of {} kept losing races",
            batch.id
        )))
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
        // Running first (the usual answer), then stopping: a cancel costs one more attempt.
        for answer in [ChunkWrite::Running, ChunkWrite::Stopping] {
            let commit = self.update_step(
                "SET #c = #c + :lines, parts = list_append(if_not_exists(parts, :none), :part), \
                 lease_expires_at = :until",
                Step {
                    key: chunk_key(batch, chunk),
                    condition: "lease_token = :token AND done = :false",
                    names: &[("#c", "cursor")],
                    values: vec![
                        (":lines", num(part.lines.into())),
                        (":none", AttributeValue::L(Vec::new())),
                        (":part", AttributeValue::L(vec![part_value(part)])),
                        (":until", n(lease_until.0)),
                        (":token", s(token)),
                        (":false", AttributeValue::Bool(false)),
                    ],
                },
            )?;
            let usage = &part.usage;
            let (condition, mut values) = Self::chunk_write_condition(answer, Some(now));
            values.extend([
                (":completed", num(part.completed.into())),
                (":failed", num(part.failed.into())),
                (":input_tokens", num(usage.input_tokens)),
                (":cached_tokens", num(usage.cached_tokens)),
                (":output_tokens", num(usage.output_tokens)),
                (":reasoning_tokens", num(usage.reasoning_tokens)),
                (":total_tokens", num(usage.total_tokens)),
            ]);
            let counts = self.update_step(
                "ADD completed :completed, failed :failed, input_tokens :input_tokens, \
                 cached_tokens :cached_tokens, output_tokens :output_tokens, \
                 reasoning_tokens :reasoning_tokens, total_tokens :total_tokens",
                Step {
                    key: batch_key(batch),
                    condition: &condition,
                    names: &[("#s", "status")],
                    values,
                },
            )?;
            if self.transact(vec![commit, counts]).await? {
                return Ok(answer);
            }
        }
        Ok(ChunkWrite::Refused)
    }

    async fn complete_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let mark = self.update_step(
            "SET done = :true REMOVE lease_token, lease_expires_at",
            Step {
                key: chunk_key(batch, chunk),
                condition: "lease_token = :token AND done = :false",
                names: &[],
                values: vec![
                    (":true", AttributeValue::Bool(true)),
                    (":false", AttributeValue::Bool(false)),
                    (":token", s(token)),
                ],
            },
        )?;
        let count = self.update_step(
            "ADD chunks_done :one",
            Step {
                key: batch_key(batch),
                condition: "attribute_exists(pk)",
                names: &[],
                values: vec![(":one", n(1))],
            },
        )?;
        self.transact(vec![mark, count]).await
    }

    async fn renew_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        for answer in [ChunkWrite::Running, ChunkWrite::Stopping] {
            let (condition, values) = Self::chunk_write_condition(answer, None);
            let status = self.check_step(Step {
                key: batch_key(batch),
                condition: &condition,
                names: &[("#s", "status")],
                values,
            })?;
            let renew = self.update_step(
                "SET lease_expires_at = :until",
                Step {
                    key: chunk_key(batch, chunk),
                    condition: "lease_token = :token AND done = :false",
                    names: &[],
                    values: vec![
                        (":until", n(lease_until.0)),
                        (":token", s(token)),
                        (":false", AttributeValue::Bool(false)),
                    ],
                },
            )?;
            if self.transact(vec![status, renew]).await? {
                return Ok(answer);
            }
        }
        Ok(ChunkWrite::Refused)
    }

    async fn release_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(chunk_key(batch, chunk)))
            .update_expression("REMOVE lease_token, lease_expires_at")
            .condition_expression("lease_token = :token")
            .expression_attribute_values(":token", s(token));
        Ok(write::update(update).await?.applied())
    }

    async fn chunks(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError> {
        let mut chunks = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
                .expression_attribute_values(":pk", chunk_pk(&batch.id))
                .expression_attribute_values(":chunk", s("C#"))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items.unwrap_or_default() {
                chunks.push(chunk_from_item(&item)?);
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => break,
            }
        }
        Ok(chunks)
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
        let [first, second] = BatchStatus::CANCELLABLE;
        let update = self
            .update_batch(&batch)
            .update_expression("SET #s = :cancelling, cancelling_at = :now")
            .condition_expression("#s IN (:first, :second)")
            .expression_attribute_values(":cancelling", status_value(BatchStatus::Cancelling))
            .expression_attribute_values(":first", status_value(first))
            .expression_attribute_values(":second", status_value(second))
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
        let mut update = self
            .update_batch(batch)
            .condition_expression("#s = :finalizing AND finalize_token = :token")
            .expression_attribute_names("#t", "total")
            .expression_attribute_values(":finalizing", status_value(BatchStatus::Finalizing))
            .expression_attribute_values(":token", s(token))
            .expression_attribute_values(":outcome", status_value(result.outcome.status()))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":total", num(result.counts.total))
            .expression_attribute_values(":completed", num(result.counts.completed))
            .expression_attribute_values(":failed", num(result.counts.failed));
        for (name, value) in usage_fields(&result.usage) {
            set.push(format!("{name} = :{name}"));
            update = update.expression_attribute_values(format!(":{name}"), num(value));
        }
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
        Ok(write::update(update).await?.applied())
    }

    async fn count_active(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let mut count = 0usize;
        let mut start: Option<Item> = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("NOT (#s IN (:t0, :t1, :t2, :t3))")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":pk", batch_pk(tenant))
                .select(Select::Count)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (i, status) in BatchStatus::TERMINAL.iter().enumerate() {
                query = query.expression_attribute_values(format!(":t{i}"), status_value(*status));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_partition_names_its_tenant() {
        let tenant = TenantId::parse("acme").unwrap();
        let pk = batch_pk(&tenant);
        assert_eq!(tenant_of(pk.as_s().unwrap()), Some(tenant));
        assert_eq!(tenant_of("T#acme#J"), None);
    }

    #[test]
    fn parts_round_trip_through_their_map() {
        let part = Part {
            key: "batches/acme/b/chunks/00001/t-00000".into(),
            lines: 5,
            completed: 4,
            failed: 1,
            usage: Usage {
                input_tokens: 1,
                cached_tokens: 2,
                output_tokens: 3,
                reasoning_tokens: 4,
                total_tokens: 5,
            },
            done: "0-3,7".into(),
        };
        assert_eq!(part_from_value(&part_value(&part)).unwrap(), part);
    }

    #[test]
    fn chunk_keys_sort_in_index_order() {
        let batch = BatchRef {
            tenant: TenantId::parse("acme").unwrap(),
            id: prism_core::ids::IdGenerator::new().batch_id(Timestamp(0)),
        };
        let sk = |i| chunk_key(&batch, i)[SORT_KEY].as_s().unwrap().clone();
        assert!(sk(9) < sk(10) && sk(99_999) < sk(100_000));
    }
}

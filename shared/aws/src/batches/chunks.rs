//! The chunk transitions: claim, commit a part, renew, complete and release a chunk, each one
//! conditional write (a `TransactWriteItems` where it touches the batch too), the conditions
//! they are built from, and reading a batch's chunk items.
//!
//! Two ways keep each rule in core. Claim, complete and release read the chunk, ask core
//! (`chunk_claim`, `completed_chunk`, `released_chunk`) and write only while the item is as read
//! ([`unchanged`]). The commit of a part and the lease renewal are the hot path (one write per
//! part, one per third of a lease), so they do not read first: their conditions are core's rules
//! stated for DynamoDB, the batch's statuses enumerated from `chunk_write_in`, the window added
//! when `commit_needs_window` says so, and the holder's check [`HOLDS_CHUNK`]; the contract
//! suite's fencing cases hold both stores to the same answers.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, TransactWriteItem, Update};
use prism_core::batches::decisions;
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::{BatchRef, Chunk, ChunkClaim, ChunkWrite, ClaimPurpose, Part};
use prism_core::ports::Lease;
use prism_core::{StoreError, Timestamp};

use super::items::{
    batch_key, chunk_from_item, chunk_item, chunk_key, chunk_pk, num, part_value, status_value,
};
use super::{CLAIM_TRIES, Condition, DynamoBatchStore, status_in};
use crate::attrs::{Item, n, s, unavailable};
use crate::write;

/// `decisions::holds_chunk` as a condition on the chunk item (unfinished, claimed with
/// `:token`; binds `:false` too), for the writes that do not read first.
const HOLDS_CHUNK: &str = "lease_token = :token AND done = :false";

/// `decisions::window_open` as a condition on the batch item, binding `:now`.
const WINDOW_OPEN: &str = "expires_at > :now";

/// The batch-item condition under which a holder's write answers `answer`: its status is one
/// core's `chunk_write_in` maps to `answer`, and for a commit (`commit_at`) the window is open
/// when core's `commit_needs_window` asks for it. Binds `:w0`.. and `:now`.
fn chunk_write_condition(answer: ChunkWrite, commit_at: Option<Timestamp>) -> Condition {
    let (mut condition, mut values) =
        status_in(|status| decisions::chunk_write_in(status) == answer);
    if let Some(now) = commit_at.filter(|_| decisions::commit_needs_window(answer)) {
        condition = format!("{condition} AND {WINDOW_OPEN}");
        values.push((":now", n(now.0)));
    }
    (condition, values)
}

/// The chunk item is as `seen` was read: done, cursor, part count and lease alike, so a write
/// core decided on that read lands only on it (a stale holder may still commit a part under its
/// expired lease, and a claimant must resume after it). Binds `:r_*` and names `#c`.
fn unchanged(seen: &Chunk) -> Condition {
    let mut terms = vec![
        "done = :r_done".to_owned(),
        "#c = :r_cursor".to_owned(),
        "size(parts) = :r_parts".to_owned(),
    ];
    let mut values = vec![
        (":r_done", AttributeValue::Bool(seen.done)),
        (":r_cursor", num(seen.cursor.into())),
        (":r_parts", num(seen.parts.len() as u64)),
    ];
    match &seen.lease_token {
        Some(token) => {
            terms.push("lease_token = :r_token".to_owned());
            values.push((":r_token", s(token.clone())));
        }
        None => terms.push("attribute_not_exists(lease_token)".to_owned()),
    }
    match seen.lease_expires_at {
        Some(until) => {
            terms.push("lease_expires_at = :r_until".to_owned());
            values.push((":r_until", n(until.0)));
        }
        None => terms.push("attribute_not_exists(lease_expires_at)".to_owned()),
    }
    (terms.join(" AND "), values)
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

    async fn transact(&self, items: Vec<TransactWriteItem>) -> Result<bool, StoreError> {
        write::transact(&self.client, items).await
    }

    /// Writes a chunk item unless one is there: a replanning never resets a chunk's progress.
    pub(super) async fn put_chunk(
        &self,
        batch: &BatchRef,
        plan: &ChunkPlan,
    ) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(chunk_item(batch, plan)))
            .condition_expression("attribute_not_exists(pk)");
        // Refused means it is there already: planned before, progress kept.
        write::put(put).await.map(|_| ())
    }

    pub(super) async fn take_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        lease: &Lease,
        purpose: ClaimPurpose,
        now: Timestamp,
    ) -> Result<ChunkClaim, StoreError> {
        for _ in 0..CLAIM_TRIES {
            let current = self.batch(batch).await?;
            let seen = self.chunk(batch, chunk).await?;
            let (current, record) =
                match decisions::chunk_claim(current, seen.clone(), lease, purpose, now) {
                    Ok(taken) => taken,
                    Err(refusal) => return Ok(refusal),
                };
            let Some(seen) = seen else {
                return Ok(ChunkClaim::Closed);
            };
            let (condition, mut values) = unchanged(&seen);
            values.extend([
                (":token", s(lease.token.clone())),
                (":until", n(lease.expires_at.0)),
            ]);
            let take = self.update_step(
                "SET lease_token = :token, lease_expires_at = :until",
                Step {
                    key: chunk_key(batch, chunk),
                    condition: &condition,
                    names: &[("#c", "cursor")],
                    values,
                },
            )?;
            // The batch as read allowed the claim (its window never moves), so it still does
            // while its status is the one read.
            let still = self.check_step(Step {
                key: batch_key(batch),
                condition: "#s = :seen",
                names: &[("#s", "status")],
                values: vec![(":seen", status_value(current.status))],
            })?;
            if self.transact(vec![still, take]).await? {
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

    pub(super) async fn commit_part(
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
                    condition: HOLDS_CHUNK,
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
            let (condition, mut values) = chunk_write_condition(answer, Some(now));
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

    /// Completes the chunk as core's `completed_chunk` decides on the chunk as read, counting it
    /// on the batch in the same transaction. Once per chunk, so the read costs little.
    pub(super) async fn mark_chunk_done(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        for _ in 0..CLAIM_TRIES {
            let Some(seen) = self.chunk(batch, chunk).await? else {
                return Ok(false);
            };
            let Some(done) = decisions::completed_chunk(seen.clone(), token) else {
                return Ok(false);
            };
            let (condition, mut values) = unchanged(&seen);
            values.push((":done", AttributeValue::Bool(done.done)));
            let mark = self.update_step(
                "SET done = :done REMOVE lease_token, lease_expires_at",
                Step {
                    key: chunk_key(batch, chunk),
                    condition: &condition,
                    names: &[("#c", "cursor")],
                    values,
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
            if self.transact(vec![mark, count]).await? {
                return Ok(true);
            }
            // Changed since the read (a renewal landed, say): decide again on a fresh read.
        }
        Err(StoreError::Unavailable(format!(
            "completion of chunk {chunk} of {} kept losing races",
            batch.id
        )))
    }

    pub(super) async fn renew_chunk_lease(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
        lease_until: Timestamp,
    ) -> Result<ChunkWrite, StoreError> {
        for answer in [ChunkWrite::Running, ChunkWrite::Stopping] {
            let (condition, values) = chunk_write_condition(answer, None);
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
                    condition: HOLDS_CHUNK,
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

    /// Gives the chunk up as core's `released_chunk` decides on the chunk as read. Rare (a
    /// deadline, a shutdown, a cancel), so the read costs little.
    pub(super) async fn give_up_chunk(
        &self,
        batch: &BatchRef,
        chunk: u32,
        token: &str,
    ) -> Result<bool, StoreError> {
        for _ in 0..CLAIM_TRIES {
            let Some(seen) = self.chunk(batch, chunk).await? else {
                return Ok(false);
            };
            if decisions::released_chunk(seen.clone(), token).is_none() {
                return Ok(false);
            }
            let (condition, values) = unchanged(&seen);
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(chunk_key(batch, chunk)))
                .update_expression("REMOVE lease_token, lease_expires_at")
                .condition_expression(condition)
                .expression_attribute_names("#c", "cursor");
            for (name, value) in values {
                update = update.expression_attribute_values(name, value);
            }
            if write::update(update).await?.applied() {
                return Ok(true);
            }
        }
        Err(StoreError::Unavailable(format!(
            "release of chunk {chunk} of {} kept losing races",
            batch.id
        )))
    }

    pub(super) async fn chunk_items(&self, batch: &BatchRef) -> Result<Vec<Chunk>, StoreError> {
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
}

//! The batch and chunk items' layout in the table: their keys, and each item to and from the
//! core's `Batch`, `Chunk` and `Part`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::batches::input::ChunkPlan;
use prism_core::batches::native::live_counts;
use prism_core::batches::{
    Batch, BatchErrors, BatchRef, BatchStatus, Chunk, FinalizeLease, Part, RequestCounts, Usage,
};
use prism_core::pricing::UsageByModel;
use prism_core::{BatchId, FileId, StoreError, TenantId};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, get_n, get_s, get_ts, n, need_s, s, tenant_of_pk, tenant_pk,
};

pub(super) fn batch_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "B")
}

/// The tenant of a partition of this kind.
pub(super) fn tenant_of(pk: &str) -> Option<TenantId> {
    tenant_of_pk(pk, "B")
}

pub(super) fn batch_key(batch: &BatchRef) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), batch_pk(&batch.tenant)),
        (SORT_KEY.to_owned(), s(batch.id.as_str())),
    ])
}

pub(super) fn chunk_pk(id: &BatchId) -> AttributeValue {
    s(format!("B#{id}"))
}

pub(super) fn chunk_key(batch: &BatchRef, index: u32) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), chunk_pk(&batch.id)),
        (SORT_KEY.to_owned(), s(format!("C#{index:06}"))),
    ])
}

/// Batches' shards of the reconcile index, apart from the jobs' ones.
pub(super) const RECONCILE_PREFIX: &str = "RB#";

/// Counts are `u64` in the core and signed in [`n`]; nothing real comes near the limit.
pub(super) fn num(v: u64) -> AttributeValue {
    n(i64::try_from(v).unwrap_or(i64::MAX))
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(s)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn status_value(status: BatchStatus) -> AttributeValue {
    s(status.as_str())
}

/// The usage fields by attribute name, as a batch and a part hold them.
pub(super) fn usage_fields(usage: &Usage) -> [(&'static str, u64); 5] {
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
pub(super) fn count_of(item: &Item, name: &str, what: &str) -> Result<u64, StoreError> {
    get_n(item, name).map_or(Ok(0), |v| {
        u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} has a bad '{name}'")))
    })
}

pub(super) fn small_count_of(item: &Item, name: &str, what: &str) -> Result<u32, StoreError> {
    u32::try_from(count_of(item, name, what)?)
        .map_err(|_| StoreError::Corrupt(format!("{what} has a bad '{name}'")))
}

pub(super) fn usage_of(item: &Item, what: &str) -> Result<Usage, StoreError> {
    Ok(Usage {
        input_tokens: count_of(item, "input_tokens", what)?,
        cached_tokens: count_of(item, "cached_tokens", what)?,
        output_tokens: count_of(item, "output_tokens", what)?,
        reasoning_tokens: count_of(item, "reasoning_tokens", what)?,
        total_tokens: count_of(item, "total_tokens", what)?,
    })
}

pub(super) fn json_of<T: serde::de::DeserializeOwned>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StoreError> {
    get_s(item, name)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| StoreError::Corrupt(format!("batch item has a bad '{name}'")))
}

/// The attribute holding a native group's counts as its provider last reported them.
pub(super) fn native_counts_attribute(group: u32) -> String {
    format!("{NATIVE_COUNTS_PREFIX}{group}")
}

const NATIVE_COUNTS_PREFIX: &str = "native_";

/// Every native group's counts on the item (an unreadable one counts as nothing).
fn native_counts_of(item: &Item) -> BTreeMap<u32, RequestCounts> {
    item.iter()
        .filter_map(|(name, value)| {
            let group = name.strip_prefix(NATIVE_COUNTS_PREFIX)?.parse().ok()?;
            let counts = serde_json::from_str(value.as_s().ok()?).ok()?;
            Some((group, counts))
        })
        .collect()
}

pub(super) fn batch_from_item(item: &Item) -> Result<Batch, StoreError> {
    const WHAT: &str = "batch item";
    let corrupt = |what: &str| StoreError::Corrupt(format!("batch item has a bad '{what}'"));
    let file_id = |name: &str| {
        get_s(item, name)
            .map(|t| FileId::parse(t).ok_or_else(|| corrupt(name)))
            .transpose()
    };
    let status = BatchStatus::parse(need_s(item, "status")?).ok_or_else(|| corrupt("status"))?;
    let committed = RequestCounts {
        total: count_of(item, "total", WHAT)?,
        completed: count_of(item, "completed", WHAT)?,
        failed: count_of(item, "failed", WHAT)?,
    };
    Ok(Batch {
        id: BatchId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of(need_s(item, PARTITION_KEY)?).ok_or_else(|| corrupt(PARTITION_KEY))?,
        input_file_id: FileId::parse(need_s(item, "input_file_id")?)
            .ok_or_else(|| corrupt("input_file_id"))?,
        endpoint: prism_core::ApiEndpoint::from_path(need_s(item, "endpoint")?)
            .ok_or_else(|| corrupt("endpoint"))?,
        completion_window: need_s(item, "completion_window")?.to_owned(),
        metadata: json_of(item, "metadata")?,
        output_expires_after: get_n(item, "output_expires_after")
            .map(|ms| u64::try_from(ms).map_err(|_| corrupt("output_expires_after")))
            .transpose()?
            .map(Duration::from_millis),
        status,
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        expires_at: get_ts(item, "expires_at").ok_or_else(|| corrupt("expires_at"))?,
        in_progress_at: get_ts(item, "in_progress_at"),
        finalizing_at: get_ts(item, "finalizing_at"),
        completed_at: get_ts(item, "completed_at"),
        failed_at: get_ts(item, "failed_at"),
        expired_at: get_ts(item, "expired_at"),
        cancelling_at: get_ts(item, "cancelling_at"),
        cancelled_at: get_ts(item, "cancelled_at"),
        counts: live_counts(status, committed, &native_counts_of(item)),
        usage: usage_of(item, WHAT)?,
        errors: json_of::<BatchErrors>(item, "errors")?,
        output_file_id: file_id("output_file_id")?,
        error_file_id: file_id("error_file_id")?,
        model: get_s(item, "model").map(str::to_owned),
        chunks: small_count_of(item, "chunks", WHAT)?,
        chunks_done: small_count_of(item, "chunks_done", WHAT)?,
        finalize: json_of::<FinalizeLease>(item, "finalize")?,
        usage_by_model: json_of::<UsageByModel>(item, "usage_by_model")?.unwrap_or_default(),
    })
}

pub(super) fn part_value(part: &Part) -> AttributeValue {
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

pub(super) fn part_from_value(value: &AttributeValue) -> Result<Part, StoreError> {
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

pub(super) fn chunk_from_item(item: &Item) -> Result<Chunk, StoreError> {
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
            native: get_s(item, "native").map(native_from_attribute),
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

pub(super) fn chunk_item(batch: &BatchRef, plan: &ChunkPlan) -> Item {
    let mut item = chunk_key(batch, plan.index);
    item.extend([
        ("start".to_owned(), num(plan.start)),
        ("end".to_owned(), num(plan.end)),
        ("lines".to_owned(), num(plan.lines.into())),
        ("cursor".to_owned(), n(0)),
        ("parts".to_owned(), AttributeValue::L(Vec::new())),
        ("done".to_owned(), AttributeValue::Bool(false)),
    ]);
    if let Some(native) = &plan.native {
        item.insert("native".to_owned(), s(native_attribute(native)));
    }
    item
}

/// A chunk's native line ranges as an attribute: prefixed, so "no native lines" is stored as a
/// non-empty string (absent means not recorded).
fn native_attribute(ranges: &str) -> String {
    format!("r:{ranges}")
}

fn native_from_attribute(stored: &str) -> String {
    stored.strip_prefix("r:").unwrap_or(stored).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prism_core::Timestamp;

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

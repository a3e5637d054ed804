//! Reading and writing DynamoDB attribute maps, and turning SDK errors into `StoreError`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::{StoreError, TenantId, Timestamp};

pub type Item = HashMap<String, AttributeValue>;

// The state table's key layout: `infra/template.yaml` declares the same names (the emulator's
// table is created from it, and `tests/template.rs` compares them). The update, condition and
// key-condition expressions spell these names inside their text as well.
/// Partition key (`T#<tenant>#<kind>`, `KEY#<hash>`, a batch's chunk partition).
pub const PARTITION_KEY: &str = "pk";
/// Sort key (the item's id).
pub const SORT_KEY: &str = "sk";
/// Partition key of the sparse reconcile index: a shard, set only on unfinished items.
pub const RC_PK: &str = "rc_pk";
/// Sort key of the reconcile index: when the item needs looking at (ms).
pub const RC_AT: &str = "rc_at";
/// The sparse index of unfinished jobs and batches the reconciler queries.
pub const RECONCILE_INDEX: &str = "reconcile";
/// Epoch seconds after which DynamoDB's TTL deletes the item.
pub const TTL_ATTRIBUTE: &str = "ttl";

/// Shards of the reconcile index, so its writes spread over partitions (jobs' `R#<n>`, batches'
/// `RB#<n>`).
pub const RECONCILE_SHARDS: u32 = 16;

/// The reconcile shard of an item: `<prefix><n>`, `n` from the id's last character.
pub fn reconcile_shard(prefix: &str, id: &str) -> AttributeValue {
    reconcile_shard_name(
        prefix,
        u32::from(id.bytes().last().unwrap_or(0)) % RECONCILE_SHARDS,
    )
}

/// Shard `shard` of the reconcile index, as its items name it.
pub fn reconcile_shard_name(prefix: &str, shard: u32) -> AttributeValue {
    s(format!("{prefix}{shard}"))
}

/// Whether an item with an `expires_at` (ms) is still kept at `now`: DynamoDB's TTL deletes
/// lag (and emulators never delete), so reads skip expired items themselves.
pub fn is_live(item: &Item, now: Timestamp) -> bool {
    get_n(item, "expires_at").is_none_or(|e| e > now.0)
}

/// The partition of one tenant's items of one kind: `T#<tenant>#<kind>` (`J` jobs, `IDEM`
/// idempotency records, `F` files, `B` batches), so every read is scoped by its owner.
pub fn tenant_pk(tenant: &TenantId, kind: &str) -> AttributeValue {
    s(format!("T#{tenant}#{kind}"))
}

/// The tenant of a `T#<tenant>#<kind>` partition key of that kind.
pub fn tenant_of_pk(pk: &str, kind: &str) -> Option<TenantId> {
    pk.strip_prefix("T#")?
        .strip_suffix(kind)?
        .strip_suffix('#')
        .and_then(TenantId::parse)
}

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

pub fn get_ts(item: &Item, name: &str) -> Option<Timestamp> {
    get_n(item, name).map(Timestamp)
}

pub fn need_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    get_s(item, name)
        .ok_or_else(|| StoreError::Corrupt(format!("item lacks string attribute '{name}'")))
}

/// An SDK failure: throttling, network, permissions. Worth retrying later, never shown to clients.
pub fn unavailable<E>(error: E) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
{
    StoreError::Unavailable(aws_sdk_dynamodb::error::DisplayErrorContext(error).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_names_its_tenant_only_for_its_own_kind() {
        let tenant = TenantId::parse("acme").unwrap();
        let pk = tenant_pk(&tenant, "IDEM");
        assert_eq!(tenant_of_pk(pk.as_s().unwrap(), "IDEM"), Some(tenant));
        assert_eq!(tenant_of_pk("T#acme#J", "IDEM"), None);
        assert_eq!(
            tenant_of_pk("T#acme#J", "J").map(|t| t.to_string()),
            Some("acme".into())
        );
        assert_eq!(tenant_of_pk("T#acmeJ", "J"), None);
    }
}

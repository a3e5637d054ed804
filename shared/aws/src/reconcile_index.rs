//! Reading the sparse `reconcile` index: the keys of one kind's items whose `rc_at` is before a
//! time, shard by shard, up to a limit. Jobs and webhook events share it; each parses the keys.

use prism_core::{StoreError, Timestamp};

use crate::attrs::{
    PARTITION_KEY, RECONCILE_INDEX, RECONCILE_SHARDS, SORT_KEY, get_s, n, reconcile_shard_name,
    unavailable,
};

/// The `(pk, sk)` of up to `limit` items in the shards named by `prefix` with `rc_at < before`,
/// one page per shard (what is left over is found by the next round).
pub async fn keys_due(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    prefix: &str,
    before: Timestamp,
    limit: usize,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut found = Vec::new();
    for shard in 0..RECONCILE_SHARDS {
        if found.len() >= limit {
            break;
        }
        let out = client
            .query()
            .table_name(table)
            .index_name(RECONCILE_INDEX)
            .key_condition_expression("rc_pk = :shard AND rc_at < :before")
            .expression_attribute_values(":shard", reconcile_shard_name(prefix, shard))
            .expression_attribute_values(":before", n(before.0))
            .limit(i32::try_from(limit - found.len()).unwrap_or(i32::MAX))
            .send()
            .await
            .map_err(unavailable)?;
        for item in out.items.unwrap_or_default() {
            if let (Some(pk), Some(sk)) = (get_s(&item, PARTITION_KEY), get_s(&item, SORT_KEY)) {
                found.push((pk.to_owned(), sk.to_owned()));
            }
        }
    }
    Ok(found)
}

//! Usage counters in DynamoDB. One item per tenant, UTC day, kind of work, tier, shard and model
//! under the tenant's `pk = T#<tenant>#U` partition, `sk = <day:08>#<kind>#<tier>#<shard>#<model>`,
//! so a range of days is one key-ordered query. The finishing write of a job or a batch is one
//! `TransactWriteItems` that also `ADD`s its counts here: the finish's own condition (the lease
//! or the finalizer's token) guards them, so a redelivered finish that is refused adds nothing,
//! and a transaction that is applied adds them once. Counters of one model and day are spread
//! over [`COUNTER_SHARDS`] items by the finishing job's (or batch's) id, so concurrent finishes
//! rarely collide on one item; a read sums what it finds. `ttl` is the day's end plus
//! `COUNTER_RETENTION`.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use prism_core::batches::Usage;
use prism_core::pricing::Tier;
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::{StoreError, TenantId};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_n, get_s, n, s, tenant_pk, unavailable,
};

/// Items one counter is spread over.
const COUNTER_SHARDS: u32 = 8;

fn num(v: u64) -> AttributeValue {
    n(i64::try_from(v).unwrap_or(i64::MAX))
}

fn day_key(day: Day) -> String {
    format!("{:08}", day.0.max(0))
}

const FIELDS: [&str; 6] = [
    "requests",
    "input_tokens",
    "cached_tokens",
    "output_tokens",
    "reasoning_tokens",
    "total_tokens",
];

fn values(c: &UsageCount) -> [u64; 6] {
    let u = &c.usage;
    [
        c.requests,
        u.input_tokens,
        u.cached_tokens,
        u.output_tokens,
        u.reasoning_tokens,
        u.total_tokens,
    ]
}

/// The transaction steps that add `counts` for the work `finished_id` (a job or batch id, which
/// picks the shard); one per count.
pub fn counter_updates(
    table: &str,
    tenant: &TenantId,
    finished_id: &str,
    counts: &[UsageCount],
) -> Result<Vec<TransactWriteItem>, StoreError> {
    let shard = u32::from(finished_id.bytes().last().unwrap_or(0)) % COUNTER_SHARDS;
    counts
        .iter()
        .map(|c| {
            let sk = format!(
                "{}#{}#{}#{shard}#{}",
                day_key(c.day),
                c.kind.as_str(),
                c.tier.as_str(),
                c.model
            );
            let adds: Vec<String> = FIELDS.iter().map(|f| format!("{f} :{f}")).collect();
            let mut update = Update::builder()
                .table_name(table)
                .key(PARTITION_KEY, tenant_pk(tenant, "U"))
                .key(SORT_KEY, s(sk))
                .update_expression(format!(
                    "ADD {} SET #day = :day, #kind = :kind, tier = :tier, model = :model, #ttl = :ttl",
                    adds.join(", ")
                ))
                .expression_attribute_names("#day", "day")
                .expression_attribute_names("#kind", "kind")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":day", n(c.day.0))
                .expression_attribute_values(":kind", s(c.kind.as_str()))
                .expression_attribute_values(":tier", s(c.tier.as_str()))
                .expression_attribute_values(":model", s(c.model.clone()))
                .expression_attribute_values(":ttl", n(c.day.kept_until().unix_seconds()));
            for (field, value) in FIELDS.iter().zip(values(c)) {
                update = update.expression_attribute_values(format!(":{field}"), num(value));
            }
            Ok(TransactWriteItem::builder()
                .update(update.build().map_err(unavailable)?)
                .build())
        })
        .collect()
}

fn count_of(item: &Item) -> Option<UsageCount> {
    let u = |name| {
        get_n(item, name)
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0)
    };
    Some(UsageCount {
        day: Day(get_n(item, "day")?),
        kind: UsageKind::parse(get_s(item, "kind")?)?,
        model: get_s(item, "model")?.to_owned(),
        tier: Tier::parse(get_s(item, "tier")?)?,
        requests: u("requests"),
        usage: Usage {
            input_tokens: u("input_tokens"),
            cached_tokens: u("cached_tokens"),
            output_tokens: u("output_tokens"),
            reasoning_tokens: u("reasoning_tokens"),
            total_tokens: u("total_tokens"),
        },
    })
}

/// The tenant's counters of `kinds` on days `from..=to`, one entry per item (shards unsummed).
pub async fn read(
    client: &Client,
    table: &str,
    tenant: &TenantId,
    from: Day,
    to: Day,
    kinds: &[UsageKind],
) -> Result<Vec<UsageCount>, StoreError> {
    let mut counts = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let out = client
            .query()
            .table_name(table)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", tenant_pk(tenant, "U"))
            .expression_attribute_values(":from", s(format!("{}#", day_key(from))))
            // `~` sorts after every character a kind, tier or model key holds.
            .expression_attribute_values(":to", s(format!("{}#~", day_key(to))))
            .consistent_read(true)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(unavailable)?;
        counts.extend(
            out.items()
                .iter()
                .filter_map(count_of)
                .filter(|c| kinds.contains(&c.kind)),
        );
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => return Ok(counts),
        }
    }
}

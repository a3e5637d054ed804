//! A streamed background response's recorded events in DynamoDB: one item per event in the
//! response's own partition (`pk = T#<tenant>#RE#<response id>`, `sk` = the sequence number
//! zero-padded, so a query reads them in order after any `starting_after`). Each append is a
//! transaction that checks the job item still runs on the worker's lease, so an event is never
//! recorded by a worker that lost it. An event over [`SPILL_BYTES`] (a final
//! `response.completed` carrying a long output) goes to S3 and the item names it: items stay far
//! under DynamoDB's 400 KB. Items expire by TTL [`EVENT_RETENTION_SECS`] after they are written.

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem};
use bytes::Bytes;
use prism_core::jobs::JobRef;
use prism_core::responses::events::RecordedEvent;
use prism_core::{JobStatus, StoreError};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_s, n, need_s, s, tenant_pk, unavailable,
};
use crate::blobs::S3Blobs;
use crate::jobs::{SPILL_BYTES, job_pk};
use crate::write;

/// How long recorded events are kept: past any job retention Prism is configured with in
/// practice (7 days by default); a resumed stream of an expired response is a 404 anyway.
pub const EVENT_RETENTION_SECS: i64 = 30 * 24 * 3600;

/// DynamoDB's transaction limit is 100 items; one is the lease check.
const EVENTS_PER_TRANSACTION: usize = 99;

fn events_pk(job: &JobRef) -> AttributeValue {
    tenant_pk(&job.tenant, &format!("RE#{}", job.id))
}

fn seq_key(seq: u64) -> AttributeValue {
    s(format!("{seq:020}"))
}

pub(crate) async fn append(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    blobs: &S3Blobs,
    job: &JobRef,
    token: &str,
    events: &[RecordedEvent],
) -> Result<bool, StoreError> {
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for page in events.chunks(EVENTS_PER_TRANSACTION) {
        let check = ConditionCheck::builder()
            .table_name(table)
            .key(PARTITION_KEY, job_pk(&job.tenant))
            .key(SORT_KEY, s(job.id.as_str()))
            .condition_expression("#s = :running AND lease_token = :token")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":token", s(token))
            .build()
            .map_err(unavailable)?;
        let mut items = vec![TransactWriteItem::builder().condition_check(check).build()];
        for event in page {
            let mut item = Item::from([
                (PARTITION_KEY.to_owned(), events_pk(job)),
                (SORT_KEY.to_owned(), seq_key(event.sequence_number)),
                (TTL_ATTRIBUTE.to_owned(), n(now_secs + EVENT_RETENTION_SECS)),
            ]);
            if event.text.len() > SPILL_BYTES {
                let key = format!(
                    "response-events/{}/{}/{}",
                    job.tenant, job.id, event.sequence_number
                );
                blobs
                    .put(&key, Bytes::from(event.text.clone().into_bytes()))
                    .await?;
                item.insert("event_ref".to_owned(), s(key));
            } else {
                item.insert("event".to_owned(), s(event.text.clone()));
            }
            // A put again of an event already recorded (a write retried after its answer was
            // lost) writes the same item.
            let put = Put::builder()
                .table_name(table)
                .set_item(Some(item))
                .build()
                .map_err(unavailable)?;
            items.push(TransactWriteItem::builder().put(put).build());
        }
        if !write::transact(client, items).await? {
            return Ok(false);
        }
    }
    Ok(true)
}

pub(crate) async fn after(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    blobs: &S3Blobs,
    job: &JobRef,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    let mut start: Option<Item> = None;
    while events.len() < limit {
        let page = i32::try_from(limit - events.len())
            .unwrap_or(i32::MAX)
            .min(1000);
        let query = client
            .query()
            .table_name(table)
            .expression_attribute_values(":pk", events_pk(job));
        let query = match after {
            Some(after) => query
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", seq_key(after)),
            None => query.key_condition_expression("pk = :pk"),
        };
        let out = query
            .consistent_read(true)
            .limit(page)
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(unavailable)?;
        for item in out.items() {
            let seq = need_s(item, SORT_KEY)?
                .parse::<u64>()
                .map_err(|_| StoreError::Corrupt("response event has a bad sequence".into()))?;
            let text = match get_s(item, "event_ref") {
                Some(key) => String::from_utf8(blobs.read_all(key).await?.to_vec())
                    .map_err(|_| StoreError::Corrupt("spilled response event".into()))?,
                None => need_s(item, "event")?.to_owned(),
            };
            events.push(RecordedEvent {
                sequence_number: seq,
                text,
            });
        }
        match out.last_evaluated_key {
            Some(key) => start = Some(key),
            None => break,
        }
    }
    Ok(events)
}

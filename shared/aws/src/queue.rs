//! The `WorkQueue` port over SQS. Messages carry ids only (`{"v":1,"job":{"tenant","id"}}`,
//! the field named by the item's [`Stage`]);
//! receipts are SQS receipt handles; the receive count is SQS's `ApproximateReceiveCount`; the
//! trace context, when traces are exported, rides in the `traceparent` message attribute (the
//! body's wire format stays as it is).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName};
use prism_core::batches::BatchRef;
use prism_core::clock::{format_rfc3339, parse_rfc3339};
use prism_core::jobs::JobRef;
use prism_core::ports::{Delivery, Receipt, WorkItem, WorkQueue};
use prism_core::recurring::RecurringRef;
use prism_core::trace_context::TraceContext;
use prism_core::webhooks::EventRef;
use prism_core::{BatchId, JobId, Stage, StoreError, TenantId};
use serde::{Deserialize, Serialize};

use crate::attrs::unavailable;
use crate::timeouts::for_long_poll;

/// SQS's ceiling for `DelaySeconds` and the practical one for a visibility change.
const MAX_DELAY: Duration = Duration::from_secs(900);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest receive wait.
const LONGEST_POLL: Duration = Duration::from_secs(20);

/// The message attribute that carries the W3C trace context (read by the Lambda glue too).
pub const TRACE_ATTRIBUTE: &str = "traceparent";

#[derive(Clone)]
pub struct SqsWorkQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    wait: Duration,
}

/// What a message names: the owner and the job or batch (`id`; a chunk names its `batch` and
/// `chunk` index instead).
#[derive(Serialize, Deserialize)]
struct Named {
    tenant: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    batch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    chunk: Option<u32>,
}

/// Version 1 of the message body: `{"v":1,"<stage name>":{...}}`, one stage field naming the
/// work (see [`Stage::name`]).
pub fn encode_work_item(item: &WorkItem) -> String {
    if let WorkItem::FireSchedule { schedule, at } = item {
        return encode_firing(&schedule.tenant, &schedule.id, &format_rfc3339(*at));
    }
    if let WorkItem::PollNative { batch, group } = item {
        let named = Named {
            tenant: batch.tenant.to_string(),
            id: None,
            batch: Some(batch.id.to_string()),
            chunk: Some(*group),
        };
        let named = serde_json::to_string(&named).unwrap_or_default();
        return format!(r#"{{"v":1,"{NATIVE_FIELD}":{named}}}"#);
    }
    let named = match item {
        WorkItem::Job(job) => Named {
            tenant: job.tenant.to_string(),
            id: Some(job.id.to_string()),
            batch: None,
            chunk: None,
        },
        WorkItem::PlanBatch(batch) | WorkItem::FinalizeBatch(batch) => Named {
            tenant: batch.tenant.to_string(),
            id: Some(batch.id.to_string()),
            batch: None,
            chunk: None,
        },
        WorkItem::RunChunk { batch, chunk } => Named {
            tenant: batch.tenant.to_string(),
            id: None,
            batch: Some(batch.id.to_string()),
            chunk: Some(*chunk),
        },
        WorkItem::Webhook(event) => Named {
            tenant: event.tenant.to_string(),
            id: Some(event.id.clone()),
            batch: None,
            chunk: None,
        },
        WorkItem::FireSchedule { .. } | WorkItem::PollNative { .. } => return String::new(),
    };
    let named = serde_json::to_string(&named).unwrap_or_default();
    format!(r#"{{"v":1,"{}":{named}}}"#, item.stage().name())
}

/// The message key of a recurring schedule's firing (on the jobs queue, beside `job`).
const FIRE_FIELD: &str = "fire";
/// The message key of a native group's look (on the chunks queue, beside `chunk`): its batch,
/// and the group in `chunk`.
const NATIVE_FIELD: &str = "native";

/// What EventBridge Scheduler replaces with each invocation's scheduled time.
pub const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// `{"v":1,"fire":{"tenant","id","at"}}`; `at` is an RFC 3339 time, or [`SCHEDULED_TIME`] in
/// a recurring schedule's target input.
pub fn encode_firing(tenant: &TenantId, id: &JobId, at: &str) -> String {
    let named = serde_json::json!({"tenant": tenant.as_str(), "id": id.as_str(), "at": at});
    format!(r#"{{"v":1,"{FIRE_FIELD}":{named}}}"#)
}

fn decode_firing(named: &serde_json::Value) -> Option<WorkItem> {
    let field = |name: &str| named.get(name).and_then(serde_json::Value::as_str);
    Some(WorkItem::FireSchedule {
        schedule: RecurringRef {
            tenant: TenantId::parse(field("tenant")?)?,
            id: JobId::parse(field("id")?)?,
        },
        at: parse_rfc3339(field("at")?)?,
    })
}

/// `None` for a body that is not one of our messages (it can only be acknowledged and dropped).
pub fn decode_work_item(body: &str) -> Option<WorkItem> {
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(body).ok()?;
    if let Some(named) = fields.get(FIRE_FIELD) {
        return decode_firing(named);
    }
    if let Some(named) = fields.get(NATIVE_FIELD) {
        let named = Named::deserialize(named).ok()?;
        return Some(WorkItem::PollNative {
            batch: BatchRef {
                tenant: TenantId::parse(&named.tenant)?,
                id: BatchId::parse(named.batch.as_deref()?)?,
            },
            group: named.chunk?,
        });
    }
    let (stage, named) = fields
        .iter()
        .find_map(|(key, value)| Some((Stage::parse(key)?, value)))?;
    let named = Named::deserialize(named).ok()?;
    let tenant = TenantId::parse(&named.tenant)?;
    if stage == Stage::Jobs {
        return Some(WorkItem::Job(JobRef {
            tenant,
            id: JobId::parse(named.id.as_deref()?)?,
        }));
    }
    if stage == Stage::Webhooks {
        return Some(WorkItem::Webhook(EventRef {
            tenant,
            id: named.id?,
        }));
    }
    let id = named.batch.as_deref().or(named.id.as_deref())?;
    let batch = BatchRef {
        tenant,
        id: BatchId::parse(id)?,
    };
    WorkItem::of_batch(stage, batch, named.chunk)
}

fn secs(d: Duration, cap: Duration) -> i32 {
    i32::try_from(d.min(cap).as_secs()).unwrap_or(i32::MAX)
}

impl SqsWorkQueue {
    /// `wait` is how long a receive long-polls for messages when none are waiting.
    pub fn new(client: aws_sdk_sqs::Client, url: String, wait: Duration) -> Self {
        Self { client, url, wait }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Receives raw bodies, for a consumer that must also handle bodies it cannot decode.
    pub async fn receive_raw(
        &self,
        max: usize,
        visibility: Duration,
    ) -> Result<Vec<(Option<WorkItem>, Receipt, u32, Option<TraceContext>)>, StoreError> {
        let wait = self.wait.min(LONGEST_POLL);
        let receive = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(secs(visibility, MAX_VISIBILITY))
            .wait_time_seconds(secs(wait, LONGEST_POLL))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names(TRACE_ATTRIBUTE);
        // A long poll answers only after its wait when no message comes: the client's attempt
        // and operation timeouts would cut it, so they are the wait longer for this call.
        let timeouts = self
            .client
            .config()
            .timeout_config()
            .filter(|_| !wait.is_zero())
            .map(|base| for_long_poll(base, wait));
        let out = match timeouts {
            Some(timeouts) => {
                receive
                    .customize()
                    .config_override(
                        aws_sdk_sqs::config::Builder::default().timeout_config(timeouts),
                    )
                    .send()
                    .await
            }
            None => receive.send().await,
        }
        .map_err(unavailable)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let receipt = Receipt(m.receipt_handle?);
                let count = m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let trace = m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get(TRACE_ATTRIBUTE))
                    .and_then(|v| v.string_value())
                    .and_then(TraceContext::parse);
                Some((
                    m.body.as_deref().and_then(decode_work_item),
                    receipt,
                    count,
                    trace,
                ))
            })
            .collect())
    }
}

#[async_trait]
impl WorkQueue for SqsWorkQueue {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError> {
        let trace = prism_core::trace_context::current()
            .map(|trace| {
                MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(trace.0)
                    .build()
            })
            .transpose()
            .map_err(unavailable)?;
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(encode_work_item(item))
            .delay_seconds(secs(delay, MAX_DELAY))
            .set_message_attributes(trace.map(|t| HashMap::from([(TRACE_ATTRIBUTE.to_owned(), t)])))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError> {
        let mut deliveries = Vec::new();
        for (item, receipt, receive_count, trace) in self.receive_raw(max, visibility).await? {
            match item {
                Some(item) => deliveries.push(Delivery {
                    item,
                    receipt,
                    receive_count,
                    trace,
                    claim: None,
                }),
                None => {
                    tracing::warn!("dropping a message that is not a Prism work item");
                    self.ack(&receipt).await?;
                }
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .send()
            .await;
        ignore_stale(result.map(|_| ()))
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError> {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(secs(visibility, MAX_VISIBILITY))
            .send()
            .await;
        ignore_stale(result.map(|_| ()))
    }
}

/// A receipt from an earlier receive (the message was redelivered since, or already deleted)
/// names nothing we may still act on; the port ignores it, as the embedded queue does.
fn ignore_stale<E>(
    result: Result<(), aws_sdk_sqs::error::SdkError<E, aws_sdk_sqs::config::http::HttpResponse>>,
) -> Result<(), StoreError>
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata + Send + Sync + 'static,
{
    match result {
        Ok(()) => Ok(()),
        Err(err)
            if matches!(
                err.as_service_error().and_then(|e| e.code()),
                Some("ReceiptHandleIsInvalid" | "InvalidParameterValue" | "MessageNotInflight")
                    | Some("AWS.SimpleQueueService.MessageNotInflight")
            ) =>
        {
            tracing::debug!("ignoring a stale receipt");
            Ok(())
        }
        Err(err) => Err(unavailable(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_firing_round_trips_and_its_template_names_the_scheduled_time() {
        let tenant = TenantId::parse("acme").unwrap();
        let id = JobId::parse("sched_01m8fjznbgbn54wfrbn0pv7xk8").unwrap();
        let at = parse_rfc3339("2026-04-05T09:00:00Z").unwrap();
        let item = WorkItem::FireSchedule {
            schedule: RecurringRef {
                tenant: tenant.clone(),
                id: id.clone(),
            },
            at,
        };
        assert_eq!(
            decode_work_item(&encode_work_item(&item)),
            Some(item.clone())
        );
        // What EventBridge sends once it has put the invocation's time in the template.
        let template = encode_firing(&tenant, &id, SCHEDULED_TIME);
        assert!(template.contains(SCHEDULED_TIME));
        let sent = template.replace(SCHEDULED_TIME, "2026-04-05T09:00:00Z");
        assert_eq!(decode_work_item(&sent), Some(item));
        assert_eq!(
            decode_work_item(&template),
            None,
            "an unfilled template is no firing"
        );
    }

    #[test]
    fn work_items_round_trip_through_message_bodies() {
        let item = WorkItem::Job(JobRef {
            tenant: TenantId::parse("acme").unwrap(),
            id: JobId::parse("job_01m8fjznbgbn54wfrbn0pv7xk8").unwrap(),
        });
        let body = encode_work_item(&item);
        assert_eq!(
            body,
            r#"{"v":1,"job":{"tenant":"acme","id":"job_01m8fjznbgbn54wfrbn0pv7xk8"}}"#
        );
        assert_eq!(decode_work_item(&body), Some(item));
        assert_eq!(decode_work_item("{}"), None);
        assert_eq!(
            decode_work_item(r#"{"v":1,"job":{"tenant":"a#b","id":"job_x"}}"#),
            None
        );
    }

    #[test]
    fn batch_stage_messages_keep_their_wire_format_and_round_trip() {
        let batch = BatchRef {
            tenant: TenantId::parse("acme").unwrap(),
            id: prism_core::ids::IdGenerator::new().batch_id(prism_core::Timestamp(0)),
        };
        let chunk = WorkItem::RunChunk {
            batch: batch.clone(),
            chunk: 3,
        };
        assert_eq!(
            encode_work_item(&chunk),
            format!(
                r#"{{"v":1,"chunk":{{"tenant":"acme","batch":"{}","chunk":3}}}}"#,
                batch.id
            )
        );
        for item in [
            WorkItem::PlanBatch(batch.clone()),
            chunk,
            WorkItem::FinalizeBatch(batch.clone()),
            WorkItem::PollNative {
                batch: batch.clone(),
                group: 2,
            },
        ] {
            assert_eq!(decode_work_item(&encode_work_item(&item)), Some(item));
        }
    }
}

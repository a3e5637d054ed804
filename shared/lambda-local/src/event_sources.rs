//! What Lambda's SQS event source mapping does, for the local stack: receive up to the mapping's
//! batch size (waiting up to its batching window to fill it), invoke the function with the SQS
//! event, delete the records it did not report in `batchItemFailures`, and leave everything to
//! the queue's visibility timeout when the invocation fails. The queue's own redrive policy
//! then moves a message to its dead-letter queue, exactly as on AWS.

use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::invoke::Invoker;

/// How long one receive waits for a first message: short, so a stop is noticed at once.
const IDLE_WAIT_SECONDS: i32 = 1;
/// Pause after a failed receive, so a broken emulator does not spin.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// One mapping from a queue to a function, resolved against the provisioned stack.
#[derive(Debug, Clone)]
pub struct QueueMapping {
    pub logical_id: String,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: u32,
    pub batching_window: Duration,
    pub report_batch_item_failures: bool,
    /// Pollers running at once (invocations in flight).
    pub concurrency: usize,
}

/// Runs the mapping's pollers until `stop`.
pub fn spawn_pollers(
    sqs: aws_sdk_sqs::Client,
    mapping: QueueMapping,
    invoker: Invoker,
    region: String,
    stop: CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..mapping.concurrency.max(1))
        .map(|_| {
            let poller = Poller {
                sqs: sqs.clone(),
                mapping: mapping.clone(),
                invoker: invoker.clone(),
                region: region.clone(),
            };
            let stop = stop.clone();
            tokio::spawn(async move { poller.run(stop).await })
        })
        .collect()
}

struct Poller {
    sqs: aws_sdk_sqs::Client,
    mapping: QueueMapping,
    invoker: Invoker,
    region: String,
}

impl Poller {
    async fn run(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let batch = tokio::select! {
                batch = self.gather() => batch,
                () = stop.cancelled() => return,
            };
            let messages = match batch {
                Ok(messages) if messages.is_empty() => continue,
                Ok(messages) => messages,
                Err(error) => {
                    tracing::warn!(mapping = %self.mapping.logical_id, %error, "receive failed");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            let event = sqs_event(&messages, &self.mapping.queue_arn, &self.region);
            match self.invoker.invoke(&event).await {
                Ok(answer) => {
                    let failed = failed_ids(&answer, self.mapping.report_batch_item_failures);
                    let done: Vec<&Message> = messages
                        .iter()
                        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
                        .collect();
                    self.delete(&done).await;
                }
                Err(error) => {
                    // The whole batch comes back after the visibility timeout, as on AWS.
                    tracing::warn!(mapping = %self.mapping.logical_id, %error, records = messages.len(), "invocation failed");
                }
            }
        }
    }

    /// One batch: up to `batch_size` messages, waiting at most the batching window once the
    /// first has arrived.
    async fn gather(&self) -> Result<Vec<Message>, String> {
        let size = self.mapping.batch_size.max(1) as usize;
        let mut messages = self.receive(size, IDLE_WAIT_SECONDS).await?;
        if messages.is_empty() {
            return Ok(messages);
        }
        let window_ends = Instant::now() + self.mapping.batching_window;
        while messages.len() < size && Instant::now() < window_ends {
            let more = self.receive(size - messages.len(), 0).await?;
            if more.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            messages.extend(more);
        }
        Ok(messages)
    }

    async fn receive(&self, max: usize, wait_seconds: i32) -> Result<Vec<Message>, String> {
        let max = i32::try_from(max.min(10)).unwrap_or(10);
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.mapping.queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| aws_sdk_sqs::error::DisplayErrorContext(e).to_string())?;
        Ok(out.messages.unwrap_or_default())
    }

    async fn delete(&self, messages: &[&Message]) {
        for chunk in messages.chunks(10) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .ok()
                })
                .collect();
            if let Err(error) = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.mapping.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                // Undeleted messages come back: the functions are built for redelivery.
                tracing::warn!(mapping = %self.mapping.logical_id, error = %aws_sdk_sqs::error::DisplayErrorContext(error), "delete failed");
            }
        }
    }
}

/// The SQS event Lambda sends for these messages (`Records`, as in `infra/events/sqs-jobs.json`).
pub fn sqs_event(messages: &[Message], queue_arn: &str, region: &str) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                        .collect()
                })
                .unwrap_or_default();
            // String attributes as Lambda passes them (the `traceparent` of a job's trace).
            let message_attributes: serde_json::Map<String, Value> = m
                .message_attributes()
                .map(|attrs| {
                    attrs
                        .iter()
                        .filter_map(|(name, value)| {
                            let text = value.string_value()?;
                            Some((
                                name.clone(),
                                json!({
                                    "stringValue": text,
                                    "stringListValues": [],
                                    "binaryListValues": [],
                                    "dataType": value.data_type(),
                                }),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id().unwrap_or_default(),
                "receiptHandle": m.receipt_handle().unwrap_or_default(),
                "body": m.body().unwrap_or_default(),
                "attributes": attributes,
                "messageAttributes": message_attributes,
                "md5OfBody": m.md5_of_body().unwrap_or_default(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The message ids a function reported as failed. Without `ReportBatchItemFailures` Lambda
/// ignores the answer: a returned invocation means every record succeeded.
pub fn failed_ids(answer: &Value, report_batch_item_failures: bool) -> Vec<String> {
    if !report_batch_item_failures {
        return Vec::new();
    }
    answer["batchItemFailures"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["itemIdentifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

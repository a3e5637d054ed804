//! SQS events in and partial batch responses out: decoding records into core deliveries, and
//! reporting the records that must come back as `batchItemFailures`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use prism_aws::decode_work_item;
use prism_core::ports::{Delivery, Receipt};
use prism_core::trace_context::TraceContext;

/// One record of an SQS event, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A Prism work item, ready for the worker.
    Work {
        message_id: String,
        delivery: Delivery,
    },
    /// A body that is not one of our messages; it can never succeed.
    Malformed { message_id: String },
}

impl Record {
    pub fn message_id(&self) -> &str {
        match self {
            Record::Work { message_id, .. } | Record::Malformed { message_id } => message_id,
        }
    }
}

/// What becomes of one record once handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Lambda deletes the message.
    Done,
    /// Reported in `batchItemFailures`: the message stays and reappears once its visibility
    /// timeout ends.
    Retry,
}

/// Decodes every record of `event`, in order.
pub fn deliveries_from_event(event: &SqsEvent) -> Vec<Record> {
    event.records.iter().map(record_from_message).collect()
}

fn record_from_message(message: &SqsMessage) -> Record {
    let message_id = message.message_id.clone().unwrap_or_default();
    let Some(item) = message.body.as_deref().and_then(decode_work_item) else {
        return Record::Malformed { message_id };
    };
    let receive_count = message
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    let trace = message
        .message_attributes
        .get(prism_aws::TRACE_ATTRIBUTE)
        .and_then(|value| value.string_value.as_deref())
        .and_then(TraceContext::parse);
    Record::Work {
        message_id,
        delivery: Delivery {
            item,
            receipt: Receipt(message.receipt_handle.clone().unwrap_or_default()),
            receive_count,
            trace,
            claim: None,
        },
    }
}

/// The response Lambda reads with `ReportBatchItemFailures`: every `Retry` is listed, every
/// `Done` is left out (and so deleted).
pub fn batch_response(outcomes: &[(String, RecordOutcome)]) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for (message_id, outcome) in outcomes {
        match outcome {
            RecordOutcome::Retry => response.add_failure(message_id.clone()),
            RecordOutcome::Done => {}
        }
    }
    response
}

//! One handler per Lambda trigger: a batch from a work queue (jobs, or a batch stage), a batch
//! from a dead-letter queue, and the reconciler's schedule. Each only translates the event into
//! core calls and the results back; what happens to any work item is decided in `prism_core`.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use prism_core::StoreError;
use prism_core::deps::Deps;
use prism_core::dispatch::{QueueAction, dead_letter_item, handle_delivery};
use prism_core::ports::{Delivery, WorkItem, WorkQueue};
use prism_core::reconcile::{ReconcileReport, reconcile};
use tokio::time::Instant;
use tracing::Instrument;

use crate::sqs::{Record, RecordOutcome, batch_response, deliveries_from_event};

/// Runs every record of a work queue's batch (jobs, or a batch stage) concurrently through the
/// core's dispatch, so one slow item does not hold the others back. A stage that asks for a
/// later retry gets it: the message's visibility is changed to the wait before it is reported
/// as a failure, so Lambda's redelivery comes no sooner. A malformed body is acknowledged, since
/// it can never succeed.
///
/// `queue` is the queue the batch came from (`SqsWorkQueue` on AWS).
pub async fn handle_work_event(
    deps: &Deps,
    queue: &dyn WorkQueue,
    event: SqsEvent,
    deadline: Instant,
) -> SqsBatchResponse {
    let records = deliveries_from_event(&event);
    let outcomes = join_all(records.into_iter().map(|record| {
        let span = tracing::info_span!("sqs_record", message_id = record.message_id());
        work_record(deps, queue, record, deadline).instrument(span)
    }))
    .await;
    batch_response(&outcomes)
}

async fn work_record(
    deps: &Deps,
    queue: &dyn WorkQueue,
    record: Record,
    deadline: Instant,
) -> (String, RecordOutcome) {
    match record {
        Record::Malformed { message_id } => {
            warn_malformed();
            (message_id, RecordOutcome::Done)
        }
        Record::Work {
            message_id,
            delivery,
        } => (
            message_id,
            run_delivery(deps, queue, &delivery, deadline).await,
        ),
    }
}

async fn run_delivery(
    deps: &Deps,
    queue: &dyn WorkQueue,
    delivery: &Delivery,
    deadline: Instant,
) -> RecordOutcome {
    match handle_delivery(deps, delivery, Some(deadline)).await {
        QueueAction::Ack => RecordOutcome::Done,
        QueueAction::RetryAfter(wait) => {
            if let Err(error) = queue.extend(&delivery.receipt, wait).await {
                // Still a failure to report: the message then reappears after the queue's
                // visibility timeout instead of the wait the worker asked for.
                tracing::warn!(%error, ?wait, "could not delay the message's redelivery");
            }
            RecordOutcome::Retry
        }
    }
}

/// Settles every item of a dead-letter batch: a job fails (`processing_failed`) unless it already
/// ended; a batch's planning fails the batch; a chunk's unfinished lines are written as failed;
/// a finalization is tried again. A store failure leaves the record to come back; a malformed
/// body is acknowledged.
pub async fn handle_dead_letter_event(deps: &Deps, event: SqsEvent) -> SqsBatchResponse {
    let records = deliveries_from_event(&event);
    let outcomes = join_all(records.into_iter().map(|record| {
        let span = tracing::info_span!(
            "dead_letter",
            message_id = record.message_id(),
            job_id = tracing::field::Empty,
            tenant = tracing::field::Empty,
        );
        dead_letter_record(deps, record).instrument(span)
    }))
    .await;
    batch_response(&outcomes)
}

async fn dead_letter_record(deps: &Deps, record: Record) -> (String, RecordOutcome) {
    let (message_id, delivery) = match record {
        Record::Malformed { message_id } => {
            warn_malformed();
            return (message_id, RecordOutcome::Done);
        }
        Record::Work {
            message_id,
            delivery,
        } => (message_id, delivery),
    };
    let span = tracing::Span::current();
    span.record("tenant", delivery.item.tenant().as_str());
    if let WorkItem::Job(job) = &delivery.item {
        span.record("job_id", job.id.as_str());
    }
    let outcome = match dead_letter_item(deps, &delivery.item).await {
        QueueAction::Ack => RecordOutcome::Done,
        QueueAction::RetryAfter(_) => RecordOutcome::Retry,
    };
    (message_id, outcome)
}

fn warn_malformed() {
    // The body is never logged: it could be anything a sender put there.
    tracing::warn!("acknowledging a message that is not a Prism work item");
}

/// One reconciler pass, whatever event triggered it.
pub async fn handle_reconcile_event(deps: &Deps) -> Result<ReconcileReport, StoreError> {
    let report = reconcile(deps).await?;
    tracing::info!(
        retriggered = report.retriggered,
        purged = report.purged,
        "reconciled"
    );
    Ok(report)
}

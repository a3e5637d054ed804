//! Dispatching every work item, whatever its stage and whatever the trigger (in-process
//! dispatcher, SQS event, long-polling consumer): [`handle_delivery`] sends a delivery to its
//! stage (a job run, planning, a chunk, finalizing), turns the outcome into a [`QueueAction`],
//! and sends a message past its receive limit, or one from any dead-letter queue, to its
//! stage's dead-letter handling.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batches::{finalize, plan, process};
use crate::deps::{Deps, MAX_QUEUE_DELAY};
use crate::jobs::run::{RunOutcome, dead_letter, run_job};
use crate::ports::{Delivery, WorkItem, WorkQueue};
use crate::recurring::fire::fire_schedule;
use crate::webhooks::deliver;

/// What the trigger does with the message it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueAction {
    /// The item is terminal or the message is provably redundant: delete it.
    Ack,
    /// Leave the message and let it reappear after this long.
    RetryAfter(Duration),
}

/// After a storage failure the message is left to reappear this soon.
const STORE_FAILURE_BACKOFF: Duration = Duration::from_secs(5);

/// Handles one queue delivery, whatever the trigger. `deadline` is when the caller must return
/// (a Lambda's remaining time less a margin); `None` means no limit.
pub async fn handle_delivery(
    deps: &Deps,
    delivery: &Delivery,
    deadline: Option<Instant>,
) -> QueueAction {
    handle_delivery_until(deps, delivery, deadline, &CancellationToken::new()).await
}

/// [`handle_delivery`] that also gives up when `stop` is cancelled (a process shutting down):
/// the upstream call is aborted, the lease released and the message made visible at once, so
/// another worker or the next start resumes the job without waiting for the lease to expire.
pub async fn handle_delivery_until(
    deps: &Deps,
    delivery: &Delivery,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> QueueAction {
    let span = tracing::info_span!(
        "handle_delivery",
        stage = delivery.item.stage().name(),
        receive_count = delivery.receive_count,
        job_id = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    // The worker's side of the trace whoever queued the item started.
    crate::trace_context::adopt(&span, delivery.trace.as_ref());
    dispatch(deps, delivery, deadline, stop)
        .instrument(span)
        .await
}

async fn dispatch(
    deps: &Deps,
    delivery: &Delivery,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> QueueAction {
    let id = match &delivery.item {
        WorkItem::Job(id) => id,
        WorkItem::FireSchedule { schedule, at } => {
            return fire_schedule(deps, schedule, *at)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "a firing hit a storage failure; the message will reappear");
                    QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
                });
        }
        batch_item => {
            return handle_batch_delivery(deps, batch_item, delivery.receive_count, deadline, stop)
                .await;
        }
    };
    tracing::Span::current().record("job_id", id.id.as_str());
    tracing::Span::current().record("tenant", id.tenant.as_str());
    if delivery.receive_count > deps.work_policy.max_receives {
        return match dead_letter(deps, id).await {
            Ok(()) => QueueAction::Ack,
            Err(error) => {
                tracing::error!(%error, "could not fail a dead-lettered job");
                QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
            }
        };
    }
    match run_job(deps, id, deadline, stop, delivery.claim.clone()).await {
        Ok(RunOutcome::Finished) => QueueAction::Ack,
        Ok(RunOutcome::Busy(wait) | RunOutcome::RetryLater(wait)) => QueueAction::RetryAfter(wait),
        Ok(RunOutcome::NotDue(wait)) if wait <= MAX_QUEUE_DELAY => QueueAction::RetryAfter(wait),
        Ok(RunOutcome::NotDue(wait)) => {
            // Holding a message for hours would spend its receive count; the job's own trigger
            // (schedule) or the reconciler delivers it when due.
            tracing::info!(
                ?wait,
                "scheduled job delivered long before its time; message dropped"
            );
            QueueAction::Ack
        }
        Err(error) => {
            tracing::warn!(%error, "job run hit a storage failure; the message will reappear");
            QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
        }
    }
}

/// Runs one delivery for a long-lived consumer (embedded dispatcher, `serve --backend aws`):
/// keeps the message hidden while the job runs by extending its visibility every half period,
/// then acknowledges it or lets it reappear as the worker decided.
pub async fn run_delivery(
    deps: &Deps,
    queue: &dyn WorkQueue,
    delivery: &Delivery,
    visibility: Duration,
    stop: &CancellationToken,
) {
    let work = handle_delivery_until(deps, delivery, None, stop);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(visibility / 2);
    heartbeat.tick().await;
    let action = loop {
        tokio::select! {
            action = &mut work => break action,
            _ = heartbeat.tick() => {
                if let Err(error) = queue.extend(&delivery.receipt, visibility).await {
                    tracing::warn!(%error, "could not extend message visibility");
                }
            }
        }
    };
    let settled = match action {
        QueueAction::Ack => queue.ack(&delivery.receipt).await,
        QueueAction::RetryAfter(wait) => queue.extend(&delivery.receipt, wait).await,
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "could not settle a delivery; it will reappear");
    }
}

/// Handles one delivery of a batch stage.
async fn handle_batch_delivery(
    deps: &Deps,
    item: &WorkItem,
    receive_count: u32,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> QueueAction {
    let result = match item {
        WorkItem::PlanBatch(batch) if receive_count > deps.work_policy.max_receives => {
            plan::dead_plan(deps, batch).await
        }
        WorkItem::PlanBatch(batch) => plan::plan_batch(deps, batch).await,
        WorkItem::RunChunk { batch, chunk } if receive_count > deps.work_policy.max_receives => {
            process::dead_chunk(deps, batch, *chunk).await
        }
        WorkItem::RunChunk { batch, chunk } => {
            process::run_chunk(deps, batch, *chunk, deadline, stop).await
        }
        WorkItem::FinalizeBatch(batch) => finalize::try_finalize(deps, batch).await,
        WorkItem::PollNative { batch, group } => {
            crate::batches::native::poll::poll_group(deps, batch, *group).await
        }
        WorkItem::Webhook(event) => deliver::deliver_event(deps, event).await,
        WorkItem::Job(_) | WorkItem::FireSchedule { .. } => Ok(QueueAction::Ack),
    };
    result.unwrap_or_else(|error| {
        tracing::warn!(%error, "batch stage hit a storage failure; the message will reappear");
        QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
    })
}

/// Handles a message from a dead-letter queue: a job fails with `processing_failed`; a planning
/// message fails its batch; a chunk's unfinished lines are written as failed and counted; a
/// finalize message is simply tried again (finalizing is idempotent).
pub async fn dead_letter_item(deps: &Deps, item: &WorkItem) -> QueueAction {
    let result = match item {
        WorkItem::Job(job) => dead_letter(deps, job).await.map(|()| QueueAction::Ack),
        // A firing that never got through: its fire time passes without a run (the next one
        // fires as usual; the firing's own retries were the catch-up).
        WorkItem::FireSchedule { .. } => Ok(QueueAction::Ack),
        WorkItem::PlanBatch(batch) => plan::dead_plan(deps, batch).await,
        WorkItem::RunChunk { batch, chunk } => process::dead_chunk(deps, batch, *chunk).await,
        // Finalizing is idempotent: send it back to its own queue for another try.
        WorkItem::FinalizeBatch(batch) => deps
            .queue
            .enqueue(&WorkItem::FinalizeBatch(batch.clone()), Duration::ZERO)
            .await
            .map(|()| QueueAction::Ack),
        WorkItem::Webhook(event) => deliver::dead_letter_event(deps, event).await,
        // A look holds nothing: send it again later (the reconciler would, too).
        WorkItem::PollNative { .. } => deps
            .queue
            .enqueue(item, crate::batches::native::MAX_POLL_DELAY)
            .await
            .map(|()| QueueAction::Ack),
    };
    result.unwrap_or_else(|error| {
        tracing::error!(%error, "could not settle a dead letter; it will reappear");
        QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
    })
}

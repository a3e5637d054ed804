//! The reconciler: re-triggers work whose trigger was lost and purges what outlived its
//! retention. Queue messages are only hints; this makes sure no accepted job is stranded.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::batches::BatchStatus;
use crate::batches::plan::queue_unfinished_chunks;
use crate::clock::Timestamp;
use crate::deps::Deps;
use crate::error::StoreError;
use crate::ports::WorkItem;

/// What one pass did; also the reconciler Lambda's answer.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReconcileReport {
    pub retriggered: usize,
    pub purged: u64,
    pub purged_files: usize,
    pub purged_uploads: usize,
    pub batches: usize,
}

const BATCH: usize = 500;

pub async fn reconcile(deps: &Deps) -> Result<ReconcileReport, StoreError> {
    let now = deps.clock.now();
    let stranded = deps
        .jobs
        .stranded(now.minus(deps.work_policy.stranded_after), BATCH)
        .await?;
    for job in &stranded {
        deps.queue
            .enqueue(&WorkItem::Job(job.clone()), Duration::ZERO)
            .await?;
    }
    if !stranded.is_empty() {
        tracing::info!(count = stranded.len(), "re-triggered stranded jobs");
    }
    let batches = reconcile_batches(deps, now.minus(deps.work_policy.stranded_after)).await?;
    // Outbox events whose trigger was lost (a crash between the terminal write and the enqueue
    // on AWS): their delivery runs again, and decides itself which attempts are due.
    let events = deps
        .webhooks
        .undelivered(now.minus(deps.work_policy.stranded_after), BATCH)
        .await?;
    for event in &events {
        deps.queue
            .enqueue(&WorkItem::Webhook(event.clone()), Duration::ZERO)
            .await?;
    }
    let purged = deps.jobs.purge_expired(now, BATCH * 10).await?;
    let expired_files = deps.files.purge_expired(now, BATCH).await?;
    for file in &expired_files {
        // The record is gone, so the bytes are unreachable; a failure here only leaks disk.
        if let Err(error) = deps.blobs.delete(&file.blob_key()).await {
            tracing::warn!(%error, file_id = %file.id, "could not delete an expired file's bytes");
        }
    }
    let purged_uploads = crate::uploads::service::purge_expired_uploads(deps, BATCH).await?;
    Ok(ReconcileReport {
        retriggered: stranded.len() + events.len(),
        purged,
        purged_files: expired_files.len(),
        purged_uploads,
        batches,
    })
}

/// Sends again whatever an unfinished batch waits for: planning that never ran, chunks nobody
/// holds, and finalization (which decides for itself whether it is due: all chunks done, a
/// cancel, or the window's end). Returns how many batches it looked at.
async fn reconcile_batches(deps: &Deps, idle_before: Timestamp) -> Result<usize, StoreError> {
    let batches = deps.batches.unfinished(BATCH).await?;
    crate::telemetry::set_active_batches(batches.len());
    for batch in &batches {
        let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await? else {
            continue;
        };
        match current.status {
            BatchStatus::Validating if current.created_at < idle_before => {
                deps.queue
                    .enqueue(&WorkItem::PlanBatch(batch.clone()), Duration::ZERO)
                    .await?;
            }
            BatchStatus::InProgress => {
                let since = current.in_progress_at.unwrap_or(current.created_at);
                if since < idle_before {
                    let chunks = deps.batches.chunks(batch).await?;
                    queue_unfinished_chunks(deps, batch, &chunks, Some(idle_before)).await?;
                    crate::batches::native::groups::queue_lost_looks(deps, batch, &chunks).await?;
                }
            }
            // A cancel's looks collect what the provider batches finished; a lost one is sent
            // again, or the finalizer would wait for it to the end of its grace.
            BatchStatus::Cancelling => {
                let chunks = deps.batches.chunks(batch).await?;
                crate::batches::native::groups::queue_lost_looks(deps, batch, &chunks).await?;
            }
            _ => {}
        }
        deps.queue
            .enqueue(&WorkItem::FinalizeBatch(batch.clone()), Duration::ZERO)
            .await?;
    }
    Ok(batches.len())
}

/// Runs [`reconcile`] every `every` until `shutdown`: the reconciler of a long-lived process.
pub async fn reconcile_every(deps: Deps, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(error) = reconcile(&deps).await {
                    tracing::warn!(%error, "reconcile pass failed");
                }
            }
        }
    }
}

//! The reconciler: re-triggers work whose trigger was lost and purges what outlived its
//! retention. Queue messages are only hints; this makes sure no accepted job is stranded.

use std::time::Duration;

use crate::error::StoreError;
use crate::ports::WorkItem;
use crate::service::Deps;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileReport {
    pub retriggered: usize,
    pub purged: u64,
}

const BATCH: usize = 500;

pub async fn reconcile(deps: &Deps) -> Result<ReconcileReport, StoreError> {
    let now = deps.clock.now();
    let stranded = deps
        .store
        .stranded(now.minus(deps.policy.stranded_after), BATCH)
        .await?;
    for job in &stranded {
        deps.queue
            .enqueue(&WorkItem::Job(job.clone()), Duration::ZERO)
            .await?;
    }
    if !stranded.is_empty() {
        tracing::info!(count = stranded.len(), "re-triggered stranded jobs");
    }
    let purged = deps.store.purge_expired(now, BATCH * 10).await?;
    Ok(ReconcileReport {
        retriggered: stranded.len(),
        purged,
    })
}

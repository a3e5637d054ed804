//! What every service and stage call is given ([`Deps`]: the ports, the clock, the policies and
//! the model gate), and how any work item is triggered at a time ([`trigger_at`]): at once, by
//! a queue delay, or through the scheduler.

use std::sync::Arc;
use std::time::Duration;

use crate::batches::service::BatchPolicy;
use crate::clock::{Clock, Timestamp};
use crate::error::StoreError;
use crate::files::service::FilePolicy;
use crate::gate::ModelGate;
use crate::ids::IdGenerator;
use crate::jobs::service::JobPolicy;
use crate::ports::{
    BatchStore, BlobStore, FileStore, JobStore, Scheduler, Upstream, WorkItem, WorkQueue,
};

/// The longest delay a queue message can carry (SQS: 15 min). Work due later goes through the
/// [`Scheduler`].
pub const MAX_QUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// Everything a service or worker call needs, shared by every trigger.
#[derive(Clone)]
pub struct Deps {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub scheduler: Arc<dyn Scheduler>,
    pub batches: Arc<dyn BatchStore>,
    pub files: Arc<dyn FileStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub upstream: Arc<dyn Upstream>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<IdGenerator>,
    pub job_policy: JobPolicy,
    pub file_policy: FilePolicy,
    pub batch_policy: BatchPolicy,
    /// Lines toward each model in flight across this process.
    pub model_gate: Arc<ModelGate>,
}

/// Delivers `item` to the work queue at `due`: at once when due, by a message delay when the
/// queue can carry it, through the [`Scheduler`] beyond that.
pub async fn trigger_at(deps: &Deps, item: &WorkItem, due: Timestamp) -> Result<(), StoreError> {
    let lead = deps.clock.now().until(due);
    if lead <= MAX_QUEUE_DELAY {
        deps.queue.enqueue(item, lead).await
    } else {
        deps.scheduler.schedule(item, due).await
    }
}

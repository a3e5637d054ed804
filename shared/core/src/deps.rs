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
    BatchStore, BlobStore, FileStore, JobStore, Scheduler, UploadStore, Upstream, WorkItem,
    WorkQueue,
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
    pub uploads: Arc<dyn UploadStore>,
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

/// The knobs of every service, read once from configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub jobs: JobPolicy,
    pub files: FilePolicy,
    pub batches: BatchPolicy,
}

/// One backend's adapters, one per storage and delivery port.
pub struct Adapters {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub scheduler: Arc<dyn Scheduler>,
    pub batches: Arc<dyn BatchStore>,
    pub files: Arc<dyn FileStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub uploads: Arc<dyn UploadStore>,
}

impl Deps {
    /// The one place [`Deps`] is assembled; each backend's wiring (`EmbeddedBackend::new`,
    /// `prism_app::aws::connect_aws`) hands it its adapters. The id generator and the model gate
    /// are per process.
    pub fn new(
        adapters: Adapters,
        upstream: Arc<dyn Upstream>,
        clock: Arc<dyn Clock>,
        policies: Policies,
    ) -> Self {
        let Adapters {
            jobs,
            queue,
            scheduler,
            batches,
            files,
            blobs,
            uploads,
        } = adapters;
        Self {
            jobs,
            queue,
            scheduler,
            batches,
            files,
            blobs,
            uploads,
            upstream,
            clock,
            ids: Arc::new(IdGenerator::new()),
            model_gate: Arc::new(ModelGate::new(policies.batches.model_concurrency)),
            job_policy: policies.jobs,
            file_policy: policies.files,
            batch_policy: policies.batches,
        }
    }
}

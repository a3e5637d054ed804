//! What every service and stage call is given ([`Deps`]: the ports, the clock, the policies and
//! the model gate), and how any work item is triggered at a time ([`trigger_at`]): at once, by
//! a queue delay, or through the scheduler.

use std::sync::Arc;
use std::time::Duration;

use crate::batches::native::NoProviderBatches;
use crate::batches::service::BatchPolicy;
use crate::clock::{Clock, Timestamp};
use crate::error::StoreError;
use crate::files::service::FilePolicy;
use crate::gate::ModelGate;
use crate::ids::IdGenerator;
use crate::jobs::service::JobPolicy;
use crate::ports::{
    BatchStore, BlobStore, FileStore, JobStore, ProviderBatches, RecurringStore, RecurringTrigger,
    Scheduler, UploadStore, Upstream, WebhookSender, WebhookStore, WorkItem, WorkQueue,
};
use crate::pricing::PriceTable;
use crate::webhooks::WebhookPolicy;

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
    pub recurring: Arc<dyn RecurringStore>,
    pub recurring_trigger: Arc<dyn RecurringTrigger>,
    pub uploads: Arc<dyn UploadStore>,
    pub upstream: Arc<dyn Upstream>,
    /// The providers' own Batch APIs, for `native` providers' lines.
    pub provider_batches: Arc<dyn ProviderBatches>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub webhook_sender: Arc<dyn WebhookSender>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<IdGenerator>,
    pub work_policy: WorkPolicy,
    pub job_policy: JobPolicy,
    pub file_policy: FilePolicy,
    pub batch_policy: BatchPolicy,
    pub webhook_policy: WebhookPolicy,
    /// What finished work cost (config `[[prices]]`).
    pub prices: Arc<PriceTable>,
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

/// The knobs every stage shares (config `[workers]`): how upstream attempts are bounded and how
/// often one message may be delivered, for async and scheduled jobs and batch lines alike.
#[derive(Debug, Clone)]
pub struct WorkPolicy {
    /// Per-attempt upstream timeout.
    pub upstream_timeout: Duration,
    /// Upstream attempts per job or batch line, the first included.
    pub max_attempts: u32,
    /// Deliveries of one message (any stage) before it counts as dead-lettered.
    pub max_receives: u32,
    /// Work left untouched this long with no trigger waiting is triggered again by the
    /// reconciler.
    pub stranded_after: Duration,
}

impl Default for WorkPolicy {
    fn default() -> Self {
        Self {
            upstream_timeout: Duration::from_secs(300),
            max_attempts: 5,
            max_receives: 10,
            stranded_after: Duration::from_secs(60),
        }
    }
}

/// The knobs of every service, read once from configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub work: WorkPolicy,
    pub jobs: JobPolicy,
    pub files: FilePolicy,
    pub batches: BatchPolicy,
    pub webhooks: WebhookPolicy,
    pub prices: PriceTable,
}

impl Policies {
    /// The lease of a job run with no deadline of its own (a long-lived worker): one attempt's
    /// upstream timeout plus the lease margin, as `run_job` computes it.
    pub fn undeadlined_lease(&self) -> Duration {
        self.work.upstream_timeout + self.jobs.lease_margin
    }
}

/// One backend's adapters, one per storage and delivery port.
pub struct Adapters {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub scheduler: Arc<dyn Scheduler>,
    pub batches: Arc<dyn BatchStore>,
    pub files: Arc<dyn FileStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub webhooks: Arc<dyn WebhookStore>,
    pub webhook_sender: Arc<dyn WebhookSender>,
    pub recurring: Arc<dyn RecurringStore>,
    pub recurring_trigger: Arc<dyn RecurringTrigger>,
    pub uploads: Arc<dyn UploadStore>,
}

impl Deps {
    /// The provider batch client `native` providers' lines use (by default none: they fail).
    pub fn with_provider_batches(mut self, api: Arc<dyn ProviderBatches>) -> Self {
        self.provider_batches = api;
        self
    }

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
            webhooks,
            webhook_sender,
            recurring,
            recurring_trigger,
            uploads,
        } = adapters;
        Self {
            jobs,
            queue,
            scheduler,
            batches,
            files,
            blobs,
            recurring,
            recurring_trigger,
            uploads,
            upstream,
            provider_batches: Arc::new(NoProviderBatches),
            webhooks,
            webhook_sender,
            clock,
            ids: Arc::new(IdGenerator::new()),
            model_gate: Arc::new(ModelGate::new(policies.batches.model_concurrency)),
            work_policy: policies.work,
            job_policy: policies.jobs,
            file_policy: policies.files,
            batch_policy: policies.batches,
            webhook_policy: policies.webhooks,
            prices: Arc::new(policies.prices),
        }
    }
}

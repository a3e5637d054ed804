//! What core's orchestration tests share: the in-memory ports, a scripted upstream, a manual
//! clock, and [`World`], which wires them into `Deps` and runs the queue the way a trigger does.
//! Every `prism_core` path the tests use is re-exported here, so a module move in core is
//! repointed in this one place.
// Each test binary uses its own part of the support.
#![allow(dead_code, unused_imports)]

pub mod clock;
pub mod memory;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use prism_core::batches::decisions::NATIVE_RECHECK;
pub use prism_core::batches::finalize::try_finalize;
pub use prism_core::batches::service::{BatchPolicy, cancel_batch, create_batch, get_batch};
pub use prism_core::batches::{
    Batch, BatchOutcome, BatchRef, BatchStatus, CANCEL_GRACE, Chunk, RequestCounts, Usage,
};
pub use prism_core::clock::format_rfc3339;
pub use prism_core::deps::{Deps, MAX_QUEUE_DELAY, Policies, WorkPolicy};
pub use prism_core::dispatch::{
    QueueAction, dead_letter_item, handle_delivery, handle_delivery_until,
};
pub use prism_core::files::service::{
    FileContent, FilePolicy, delete_file, file_content, get_file, register_upload, store_upload,
};
pub use prism_core::files::{FilePurpose, FileRecord, UploadError, file_blob_key};
pub use prism_core::gate::ModelGate;
pub use prism_core::ids::IdGenerator;
pub use prism_core::jobs::JobRef;
pub use prism_core::jobs::service::{
    JobPolicy, cancel_job, get_job, submit_async_job, submit_scheduled_job,
};
pub use prism_core::ports::{
    BatchStore, BlobStore, Delivery, FileStore, JobStore, Lease, WorkItem, WorkQueue,
};
pub use prism_core::reconcile::reconcile;
pub use prism_core::{
    Clock, FileId, Job, JobError, JobKind, JobStatus, ServiceError, TenantId, Timestamp,
};

pub use clock::{ManualClock, START};
pub use memory::{
    BlobRead, MemoryBatchStore, MemoryBlobStore, MemoryFileStore, MemoryJobStore, MemoryKeyStore,
    MemoryQueue, MemoryRecurringStore, MemoryScheduler, MemoryUploadStore, MemoryWebhookStore,
    RecordingTrigger, ScriptedSender,
};
pub use upstream::{Call, Hang, MODEL, Reply, ScriptedUpstream, echo_body};

/// How long a received message stays hidden: longer than any run in these tests.
pub const VISIBILITY: Duration = Duration::from_secs(600);

pub fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap_or_else(|| unreachable!())
}

/// A chat completion request for [`MODEL`] whose first message is `prompt`.
pub fn chat(prompt: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": prompt}]})
            .to_string(),
    )
}

/// One line of a batch input file.
pub fn batch_line(custom_id: &str, prompt: &str) -> String {
    serde_json::json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": MODEL, "messages": [{"role": "user", "content": prompt}]}})
    .to_string()
}

/// The knobs of these tests: the defaults, except small batch chunks (below); the tests spell
/// out the ones that matter to them.
pub fn policies() -> Policies {
    Policies {
        batches: batch_policy(),
        ..Policies::default()
    }
}

/// Small chunks run one line at a time, so the order of upstream calls is the input's.
pub fn batch_policy() -> BatchPolicy {
    BatchPolicy {
        lines_per_chunk: 4,
        line_concurrency: 1,
        checkpoint_lines: 2,
        ..BatchPolicy::default()
    }
}

/// The ports in memory, wired into `Deps`, on a clock that follows tokio's paused time.
pub struct World {
    pub deps: Deps,
    pub clock: Arc<ManualClock>,
    pub jobs: Arc<MemoryJobStore>,
    pub queue: Arc<MemoryQueue>,
    pub scheduler: Arc<MemoryScheduler>,
    pub batches: Arc<MemoryBatchStore>,
    pub files: Arc<MemoryFileStore>,
    pub blobs: Arc<MemoryBlobStore>,
    pub upstream: Arc<ScriptedUpstream>,
    pub webhooks: Arc<MemoryWebhookStore>,
    pub sender: Arc<ScriptedSender>,
}

impl World {
    pub fn new() -> Self {
        Self::with(policies())
    }

    pub fn with(policies: Policies) -> Self {
        let Policies {
            work: work_policy,
            jobs: job_policy,
            files: file_policy,
            batches: batch_policy,
            webhooks: webhook_policy,
            prices,
        } = policies;
        let clock = Arc::new(ManualClock::following_tokio());
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let jobs = Arc::new(MemoryJobStore::new());
        let queue = Arc::new(MemoryQueue::new(Arc::clone(&dyn_clock)));
        let scheduler = Arc::new(MemoryScheduler::new(
            Arc::clone(&dyn_clock),
            Arc::clone(&queue),
        ));
        let batches = Arc::new(MemoryBatchStore::new());
        let files = Arc::new(MemoryFileStore::new());
        let blobs = Arc::new(MemoryBlobStore::new());
        let upstream = Arc::new(ScriptedUpstream::new(Arc::clone(&dyn_clock)));
        let webhooks = Arc::new(MemoryWebhookStore::new());
        let sender = Arc::new(ScriptedSender::default());
        let deps = Deps {
            jobs: jobs.clone(),
            queue: queue.clone(),
            scheduler: scheduler.clone(),
            batches: batches.clone(),
            files: files.clone(),
            blobs: blobs.clone(),
            recurring: Arc::new(MemoryRecurringStore::new()),
            recurring_trigger: Arc::new(RecordingTrigger::default()),
            uploads: Arc::new(MemoryUploadStore::new(files.clone())),
            upstream: upstream.clone(),
            provider_batches: Arc::new(prism_core::batches::native::NoProviderBatches),
            webhooks: webhooks.clone(),
            webhook_sender: sender.clone(),
            webhook_policy,
            prices: Arc::new(prices),
            clock: dyn_clock,
            ids: Arc::new(IdGenerator::new()),
            work_policy,
            job_policy,
            file_policy,
            model_gate: Arc::new(ModelGate::new(batch_policy.model_concurrency)),
            batch_policy,
        };
        Self {
            deps,
            clock,
            jobs,
            queue,
            scheduler,
            batches,
            files,
            blobs,
            upstream,
            webhooks,
            sender,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Lets `by` pass (tokio's paused clock, which the store clock follows) and hands the
    /// scheduler's due deliveries to the queue.
    pub async fn advance(&self, by: Duration) {
        tokio::time::advance(by).await;
        self.fire_schedules().await;
    }

    pub async fn fire_schedules(&self) {
        self.scheduler
            .fire_due()
            .await
            .unwrap_or_else(|e| unreachable!("the memory queue refused a schedule: {e}"));
    }

    /// Receives one visible message, runs it as a trigger does and settles it.
    pub async fn deliver_next(&self) -> Option<(WorkItem, QueueAction)> {
        let delivery = self
            .queue
            .receive(1, VISIBILITY)
            .await
            .ok()?
            .into_iter()
            .next()?;
        let action = handle_delivery(&self.deps, &delivery, None).await;
        self.settle(&delivery, action).await;
        Some((delivery.item, action))
    }

    /// Acknowledges the message or lets it reappear, as the worker decided.
    pub async fn settle(&self, delivery: &Delivery, action: QueueAction) {
        let settled = match action {
            QueueAction::Ack => self.queue.ack(&delivery.receipt).await,
            QueueAction::RetryAfter(wait) => self.queue.extend(&delivery.receipt, wait).await,
        };
        settled.unwrap_or_else(|e| unreachable!("the memory queue failed: {e}"));
    }

    /// Runs every message visible now, and those they queue, until none is visible; returns
    /// what ran, in order.
    pub async fn drain(&self) -> Vec<(WorkItem, QueueAction)> {
        let mut ran = Vec::new();
        while let Some(step) = self.deliver_next().await {
            ran.push(step);
            assert!(ran.len() < 1_000, "the queue never drained: {ran:?}");
        }
        ran
    }

    pub async fn job(&self, job: &Job) -> Job {
        self.deps
            .jobs
            .get(&job.tenant, &job.id, self.now())
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| unreachable!("job {} is gone", job.id))
    }

    pub async fn batch(&self, batch: &BatchRef) -> Batch {
        self.deps
            .batches
            .get(&batch.tenant, &batch.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| unreachable!("batch {} is gone", batch.id))
    }

    /// Uploads `lines` as a batch input file through the Files service.
    pub async fn upload_batch_input(&self, lines: &[String]) -> FileRecord {
        let mut text = lines.join("\n");
        text.push('\n');
        let body = futures::stream::iter([Ok::<_, UploadError>(Bytes::from(text))]);
        let pending = store_upload(&self.deps, &tenant(), Box::pin(body))
            .await
            .unwrap_or_else(|e| unreachable!("upload refused: {e}"));
        register_upload(
            &self.deps,
            pending,
            "input.jsonl".into(),
            FilePurpose::Batch,
            None,
        )
        .await
        .unwrap_or_else(|e| unreachable!("upload not registered: {e}"))
    }

    /// A stored file's lines, parsed.
    pub fn file_lines(&self, file: &FileId) -> Vec<serde_json::Value> {
        let bytes = self
            .blobs
            .bytes(&file_blob_key(&tenant(), file))
            .unwrap_or_else(|| unreachable!("file {file} has no bytes"));
        bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| unreachable!("{e}")))
            .collect()
    }
}

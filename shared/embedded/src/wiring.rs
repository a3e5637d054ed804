//! The embedded backend's one wiring function ([`EmbeddedBackend::new`]): every port over one
//! database and one blob directory, as `prism serve` runs it and as the tests build it.

use std::path::Path;
use std::sync::Arc;

use prism_core::Clock;
use prism_core::deps::{Adapters, Deps, Policies};
use prism_core::ports::Upstream;

use crate::{
    Database, LocalBlobStore, SqliteBatchStore, SqliteFileStore, SqliteJobStore,
    SqliteRecurringStore, SqliteRecurringTrigger, SqliteScheduler, SqliteUploadStore,
    SqliteWebhookStore, SqliteWorkQueue,
};
use prism_upstream::HttpWebhookSender;

/// The dependencies of every service and worker, plus the adapters the runtime drives directly
/// (lease reclaim, the dispatcher's wake-ups).
pub struct EmbeddedBackend {
    pub deps: Deps,
    pub jobs: SqliteJobStore,
    pub batches: SqliteBatchStore,
    pub queue: SqliteWorkQueue,
}

impl EmbeddedBackend {
    pub fn new(
        db: &Database,
        blob_dir: &Path,
        clock: Arc<dyn Clock>,
        upstream: Arc<dyn Upstream>,
        policies: Policies,
    ) -> Self {
        // The in-process dispatcher runs every job it receives at once: its receive claims them.
        let queue = SqliteWorkQueue::new(db.clone(), Arc::clone(&clock))
            .claiming_on_receive(policies.undeadlined_lease());
        let jobs = SqliteJobStore::new(db.clone(), &queue);
        let batches = SqliteBatchStore::new(db.clone()).with_wake(queue.wake());
        let adapters = Adapters {
            jobs: Arc::new(jobs.clone()),
            queue: Arc::new(queue.clone()),
            scheduler: Arc::new(SqliteScheduler::new(queue.clone(), Arc::clone(&clock))),
            batches: Arc::new(batches.clone()),
            files: Arc::new(SqliteFileStore::new(db.clone())),
            blobs: Arc::new(LocalBlobStore::new(blob_dir)),
            webhooks: Arc::new(SqliteWebhookStore::new(db.clone(), queue.wake())),
            webhook_sender: Arc::new(HttpWebhookSender::new()),
            recurring: Arc::new(SqliteRecurringStore::new(db.clone())),
            recurring_trigger: Arc::new(SqliteRecurringTrigger::new(
                queue.clone(),
                Arc::clone(&clock),
            )),
            uploads: Arc::new(SqliteUploadStore::new(db.clone())),
        };
        Self {
            deps: Deps::new(adapters, upstream, clock, policies),
            jobs,
            batches,
            queue,
        }
    }
}

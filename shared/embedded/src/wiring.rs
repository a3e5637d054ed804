//! The embedded backend assembled: every port over one database and one blob directory, as
//! `prism serve` runs it and as the tests build it.

use std::path::Path;
use std::sync::Arc;

use prism_core::Clock;
use prism_core::batches::service::BatchPolicy;
use prism_core::deps::Deps;
use prism_core::files::service::FilePolicy;
use prism_core::gate::ModelGate;
use prism_core::ids::IdGenerator;
use prism_core::jobs::service::JobPolicy;
use prism_core::ports::Upstream;

use crate::{
    Database, LocalBlobStore, SqliteBatchStore, SqliteFileStore, SqliteJobStore, SqliteScheduler,
    SqliteWorkQueue,
};

/// The dependencies of every service and worker, plus the two adapters the runtime drives
/// directly (lease reclaim, the dispatcher's wake-ups).
pub struct EmbeddedBackend {
    pub deps: Deps,
    pub store: SqliteJobStore,
    pub batches: SqliteBatchStore,
    pub queue: SqliteWorkQueue,
}

/// The knobs of every service, read once from configuration.
#[derive(Debug, Clone, Default)]
pub struct Policies {
    pub jobs: JobPolicy,
    pub files: FilePolicy,
    pub batches: BatchPolicy,
}

impl EmbeddedBackend {
    pub fn new(
        db: &Database,
        blob_dir: &Path,
        clock: Arc<dyn Clock>,
        upstream: Arc<dyn Upstream>,
        policies: Policies,
    ) -> Self {
        let queue = SqliteWorkQueue::new(db.clone(), Arc::clone(&clock));
        let store = SqliteJobStore::new(db.clone(), &queue);
        let batches = SqliteBatchStore::new(db.clone());
        let deps = Deps {
            jobs: Arc::new(store.clone()),
            queue: Arc::new(queue.clone()),
            scheduler: Arc::new(SqliteScheduler::new(queue.clone(), Arc::clone(&clock))),
            batches: Arc::new(batches.clone()),
            files: Arc::new(SqliteFileStore::new(db.clone())),
            blobs: Arc::new(LocalBlobStore::new(blob_dir)),
            upstream,
            clock,
            ids: Arc::new(IdGenerator::new()),
            model_gate: Arc::new(ModelGate::new(policies.batches.model_concurrency)),
            job_policy: policies.jobs,
            file_policy: policies.files,
            batch_policy: policies.batches,
        };
        Self {
            deps,
            store,
            batches,
            queue,
        }
    }
}

//! The embedded backend assembled: every port over one database and one blob directory, as
//! `prism serve` runs it and as the tests build it.

use std::path::Path;
use std::sync::Arc;

use prism_core::Clock;
use prism_core::file_service::FilePolicy;
use prism_core::ids::IdGenerator;
use prism_core::ports::Upstream;
use prism_core::service::{Deps, JobPolicy};

use crate::{
    Database, LocalBlobStore, SqliteFileStore, SqliteJobStore, SqliteScheduler, SqliteWorkQueue,
};

/// The dependencies of every service and worker, plus the two adapters the runtime drives
/// directly (lease reclaim, the dispatcher's wake-ups).
pub struct EmbeddedBackend {
    pub deps: Deps,
    pub store: SqliteJobStore,
    pub queue: SqliteWorkQueue,
}

impl EmbeddedBackend {
    pub fn new(
        db: &Database,
        blob_dir: &Path,
        clock: Arc<dyn Clock>,
        upstream: Arc<dyn Upstream>,
        policy: JobPolicy,
        file_policy: FilePolicy,
    ) -> Self {
        let queue = SqliteWorkQueue::new(db.clone(), Arc::clone(&clock));
        let store = SqliteJobStore::new(db.clone(), &queue);
        let deps = Deps {
            store: Arc::new(store.clone()),
            queue: Arc::new(queue.clone()),
            scheduler: Arc::new(SqliteScheduler::new(queue.clone(), Arc::clone(&clock))),
            files: Arc::new(SqliteFileStore::new(db.clone())),
            blobs: Arc::new(LocalBlobStore::new(blob_dir)),
            upstream,
            clock,
            ids: Arc::new(IdGenerator::new()),
            policy,
            file_policy,
        };
        Self { deps, store, queue }
    }
}

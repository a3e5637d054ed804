//! The port contract suites (prism-testkit) run against core's in-memory fakes, the proof that
//! the fakes the orchestration tests use behave as the SQLite and AWS adapters do.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

mod support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use prism_testkit::contracts::{Ports, ScheduleTime};
use prism_testkit::{TestClock, port_contract};

use support::{
    ManualClock, MemoryBatchStore, MemoryBlobStore, MemoryFileStore, MemoryJobStore,
    MemoryKeyStore, MemoryQueue, MemoryScheduler,
};

#[async_trait]
impl TestClock for ManualClock {
    async fn advance(&self, by: Duration) {
        ManualClock::advance(self, by);
    }
}

/// Time passing for the scheduler: the clock moves, then due schedules reach the queue, as the
/// emulator's pump does for EventBridge Scheduler.
struct Pump {
    clock: Arc<ManualClock>,
    scheduler: Arc<MemoryScheduler>,
}

#[async_trait]
impl ScheduleTime for Pump {
    async fn pass(&self, by: Duration) {
        self.clock.advance(by);
        self.scheduler.fire_due().await.unwrap();
    }
}

async fn fresh() -> Ports {
    let clock = Arc::new(ManualClock::new());
    let queue = Arc::new(MemoryQueue::new(clock.clone()));
    let scheduler = Arc::new(MemoryScheduler::new(clock.clone(), Arc::clone(&queue)));
    Ports {
        jobs: Arc::new(MemoryJobStore::new()),
        queue,
        keys: Arc::new(MemoryKeyStore::new()),
        scheduler: scheduler.clone(),
        schedules: Arc::new(Pump {
            clock: clock.clone(),
            scheduler,
        }),
        files: Arc::new(MemoryFileStore::new()),
        blobs: Arc::new(MemoryBlobStore::new()),
        batches: Arc::new(MemoryBatchStore::new()),
        clock,
    }
}

port_contract!(fresh);

async fn fresh_uploads() -> prism_testkit::contracts::UploadPorts {
    let files = Arc::new(MemoryFileStore::new());
    prism_testkit::contracts::UploadPorts {
        uploads: Arc::new(support::MemoryUploadStore::new(files.clone())),
        files,
        clock: Arc::new(ManualClock::new()),
    }
}

prism_testkit::upload_contract!(fresh_uploads);

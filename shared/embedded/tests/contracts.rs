//! The storage-port contract suites against the SQLite adapters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use prism_embedded::{
    Database, LocalBlobStore, SqliteBatchStore, SqliteFileStore, SqliteJobStore, SqliteKeyStore,
    SqliteRecurringStore, SqliteRecurringTrigger, SqliteScheduler, SqliteUploadStore,
    SqliteWebhookStore, SqliteWorkQueue,
};
use prism_testkit::contracts::Ports;
use prism_testkit::{ManualClock, port_contract};

async fn fresh() -> Ports {
    // Leaked on purpose: the database must outlive the test body, and the process ends soon.
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let db = Database::open(&dir.path().join("contract.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new());
    let queue = SqliteWorkQueue::new(db.clone(), clock.clone());
    Ports {
        jobs: Arc::new(SqliteJobStore::new(db.clone(), &queue)),
        scheduler: Arc::new(SqliteScheduler::new(queue.clone(), clock.clone())),
        queue: Arc::new(queue),
        files: Arc::new(SqliteFileStore::new(db.clone())),
        batches: Arc::new(SqliteBatchStore::new(db.clone())),
        blobs: Arc::new(LocalBlobStore::new(dir.path().join("blobs"))),
        keys: Arc::new(SqliteKeyStore::new(db)),
        schedules: clock.clone(),
        clock,
    }
}

port_contract!(fresh);

async fn fresh_uploads() -> prism_testkit::contracts::UploadPorts {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let db = Database::open(&dir.path().join("contract.sqlite3")).unwrap();
    prism_testkit::contracts::UploadPorts {
        uploads: Arc::new(SqliteUploadStore::new(db.clone())),
        files: Arc::new(SqliteFileStore::new(db)),
        clock: Arc::new(ManualClock::new()),
    }
}

prism_testkit::upload_contract!(fresh_uploads);

async fn fresh_recurring() -> prism_testkit::contracts::RecurringPorts {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let db = Database::open(&dir.path().join("contract.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new());
    let queue = SqliteWorkQueue::new(db.clone(), clock.clone());
    prism_testkit::contracts::RecurringPorts {
        recurring: Arc::new(SqliteRecurringStore::new(db)),
        trigger: Arc::new(SqliteRecurringTrigger::new(queue.clone(), clock.clone())),
        queue: Arc::new(queue),
        schedules: clock.clone(),
        clock,
    }
}

prism_testkit::recurring_contract!(fresh_recurring);

async fn fresh_webhooks() -> prism_testkit::contracts::WebhookPorts {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let db = Database::open(&dir.path().join("contract.sqlite3")).unwrap();
    let clock = Arc::new(ManualClock::new());
    let queue = SqliteWorkQueue::new(db.clone(), clock.clone());
    prism_testkit::contracts::WebhookPorts {
        webhooks: Arc::new(SqliteWebhookStore::new(db, queue.wake())),
        clock,
    }
}

prism_testkit::webhook_contract!(fresh_webhooks);

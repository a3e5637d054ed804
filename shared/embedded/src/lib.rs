//! Prism's embedded backend: SQLite (one writer with group commit, readers beside it) and local
//! files behind the core ports, its one wiring function (`EmbeddedBackend::new`), a
//! data-directory lock, and the in-process runtime that runs workers and the reconciler inside
//! `prism serve`.

mod batches;
mod blobs;
mod db;
mod files;
mod jobs;
mod keys;
mod lock;
mod queue;
mod recurring;
mod response_events;
mod runtime;
mod schedules;
mod uploads;
mod usage;
mod webhooks;
mod wiring;
mod writer;

pub use batches::SqliteBatchStore;
pub use blobs::LocalBlobStore;
pub use db::Database;
pub use files::SqliteFileStore;
pub use jobs::SqliteJobStore;
pub use keys::SqliteKeyStore;
pub use lock::{DataDirLock, LockError};
pub use queue::SqliteWorkQueue;
pub use recurring::{SqliteRecurringStore, SqliteRecurringTrigger};
pub use runtime::{RuntimeConfig, WorkerRuntime};
pub use schedules::SqliteScheduler;
pub use uploads::SqliteUploadStore;
pub use webhooks::SqliteWebhookStore;
pub use wiring::EmbeddedBackend;
pub use writer::{WriterConfig, WriterStats};

/// The database file inside a data directory.
pub const DATABASE_FILE: &str = "prism.sqlite3";

//! In-memory fakes of every port in `prism_core::ports`, for core's own tests. Each holds its
//! state behind a mutex and, for every conditional rule, asks core's decision functions as the
//! real adapters do; none re-derives a rule.

mod batches;
mod files;
mod jobs;
mod keys;
mod queue;
mod recurring;
mod uploads;
mod webhooks;

use std::sync::{Mutex, MutexGuard, PoisonError};

pub use batches::MemoryBatchStore;
pub use files::{BlobRead, MemoryBlobStore, MemoryFileStore};
pub use jobs::MemoryJobStore;
pub use keys::MemoryKeyStore;
pub use queue::{MemoryQueue, MemoryScheduler};
pub use recurring::{MemoryRecurringStore, RecordingTrigger};
pub use uploads::MemoryUploadStore;
pub use webhooks::{MemoryWebhookStore, ScriptedSender};

/// A test that panicked while holding a fake's lock has failed already; later readers see the
/// state as it was.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

//! Prism's domain: ids, clocks, jobs and their state machine, the ports adapters implement, and
//! the services (submit, cancel, run) that every trigger and every backend shares.

pub mod batches;
pub mod chat;
pub mod clock;
pub mod consumer;
pub mod dispatch;
pub mod error;
pub mod files;
pub mod gate;
pub mod ids;
pub mod jobs;
pub mod json_strict;
pub mod keys;
pub mod list;
pub mod ports;
pub mod reconcile;
pub mod retry;
pub mod routing;
pub mod stage;
pub mod upstream;

pub use clock::{Clock, SystemClock, Timestamp};
pub use error::{ServiceError, StoreError};
pub use ids::{BatchId, FileId, JobId, KeyId, TenantId};
pub use jobs::{Job, JobError, JobKind, JobStatus};
pub use stage::{PerStage, Stage};

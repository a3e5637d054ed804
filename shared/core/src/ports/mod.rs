//! The ports every backend implements (SQLite + local files embedded; DynamoDB, SQS and S3 on
//! AWS). Semantics follow the stricter backend: single-item conditional writes, at-least-once
//! delivery with a visibility timeout, and fencing tokens on every write a worker makes. Traits
//! and the plain types their signatures speak only: the rules they follow are the aggregates'
//! `decisions`, [`crate::stage`] and [`crate::upstream`].

mod batches;
mod files;
mod jobs;
mod keys;
mod queue;
mod schedules;
mod upstream;
mod webhooks;

pub use batches::{BatchResult, BatchStore};
pub use files::{BlobStore, BlobStream, FileStore, UploadStore};
pub use jobs::{CancelOutcome, ClaimOutcome, CreateOutcome, IdempotencyClaim, JobStore, Lease};
pub use keys::KeyStore;
pub use queue::{Delivery, Receipt, ReceivedClaim, WorkItem, WorkQueue};
pub use schedules::{RecurringStore, RecurringTrigger, Scheduler};
pub use upstream::{Completion, ProviderBatches, Relay, Upstream, UpstreamError};
pub use webhooks::{SendResult, WebhookSender, WebhookStore};

//! prism-core: Prism's domain, with no IO. Every rule lives here once, and both backends (SQLite
//! embedded, DynamoDB/SQS/S3 on AWS) and every trigger (HTTP, queue, schedule) share it.
//!
//! One folder per aggregate, each holding its model (`mod.rs`), its state-machine decisions as
//! pure functions (`decisions.rs`), the services behind its HTTP routes (`service.rs`) and the
//! stages that run it:
//! - [`jobs`]: async and scheduled completions; [`jobs::run`] runs one.
//! - [`batches`]: the Batch API; [`batches::input`] validates and plans an input file,
//!   [`batches::plan`], [`batches::process`] and [`batches::finalize`] are its three stages and
//!   [`batches::output`] the output-line format.
//! - [`files`]: the Files API.
//! - [`webhooks`]: events for finished work, their endpoints, signing and delivery.
//! - [`uploads`]: the Uploads API (a file in parts, joined into one file).
//! - [`responses`]: Responses background mode, as jobs of kind `response`, and their recorded
//!   streams.
//!
//! Across them: [`deps`] (what every call is given, and triggering work at a time),
//! [`dispatch`] (every delivery and dead letter to its stage), [`consumer`] (a long-lived queue
//! consumer), [`reconcile`], [`stage`] (the work stages, listed once), [`ports`] (the traits the
//! adapters implement), [`upstream`] (the one upstream-failure table), [`gate`] (the per-model
//! gate), [`pricing`] (tiers, the price table and what finished work cost), [`usage`] (a
//! tenant's totals over a time range), [`endpoint`] (the OpenAI endpoints forwarded to providers)
//! and [`requests`] (each endpoint's request rules), [`models`] (the model list), and the small vocabularies: ids, clock, keys, metadata, list, json_strict, chat,
//! routing, retry and error; [`telemetry`] lists the metrics once; [`trace_context`] carries a
//! trace through queue messages.

pub mod batches;
pub mod chat;
pub mod clock;
pub mod consumer;
pub mod deps;
pub mod dispatch;
pub mod endpoint;
pub mod error;
pub mod files;
pub mod gate;
pub mod ids;
pub mod jobs;
pub mod json_strict;
pub mod keys;
pub mod list;
pub mod liveness;
pub mod metadata;
pub mod models;
pub mod ports;
pub mod pricing;
pub mod reconcile;
pub mod recurring;
pub mod requests;
pub mod responses;
pub mod retry;
pub mod routing;
pub mod stage;
pub mod telemetry;
pub mod trace_context;
pub mod uploads;
pub mod upstream;
pub mod usage;
pub mod webhooks;

pub use clock::{Clock, SystemClock, Timestamp};
pub use endpoint::ApiEndpoint;
pub use error::{ServiceError, StoreError};
pub use ids::{BatchId, FileId, JobId, KeyId, PartId, TenantId, UploadId};
pub use jobs::{Job, JobError, JobKind, JobStatus};
pub use stage::{PerStage, Stage};

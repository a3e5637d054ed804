//! Prism's AWS backend: the core ports over DynamoDB (jobs, idempotency records, files, batches,
//! API keys), SQS (one work queue per stage), EventBridge Scheduler (deliveries past a queue
//! delay) and S3 (blobs, and attributes too large for an item). The Lambda glue is prism-lambda's.
//! Clients are built once from one `SdkConfig`; endpoints come from the standard `AWS_ENDPOINT_URL*`
//! variables, so the same code runs against AWS and an emulator. [`stack`] reads
//! `infra/template.yaml`, the one definition of the infrastructure, and [`provision_stack`]
//! creates it on an emulator.

mod attrs;
mod batches;
mod blobs;
mod files;
mod jobs;
mod keys;
mod provision;
mod queue;
mod reconcile_index;
mod recurring;
mod response_events;
mod schedules;
mod settings;
pub mod stack;
mod stages;
mod timeouts;
mod uploads;
mod usage;
mod webhooks;
mod write;

pub use batches::DynamoBatchStore;
pub use blobs::S3Blobs;
pub use files::DynamoFileStore;
pub use jobs::DynamoJobStore;
pub use keys::DynamoKeyStore;
pub use provision::{
    PhysicalResource, ProvisionError, ProvisionOptions, ProvisionedStack, provision,
    provision_stack, provision_template,
};
pub use queue::{
    SCHEDULED_TIME, SqsWorkQueue, TRACE_ATTRIBUTE, decode_work_item, encode_firing,
    encode_work_item,
};
pub use recurring::{DynamoRecurringStore, EventBridgeRecurringTrigger, recurring_schedule_name};
pub use schedules::{EventBridgeScheduler, ScheduleTarget, at_expression, schedule_name};
pub use settings::{AwsBackend, AwsSettings, LONG_POLL, SDK_MAX_ATTEMPTS, SettingsError};
pub use stack::{MAX_RECEIVE_COUNT, StackError, StackTemplate};
pub use stages::StageQueues;
pub use timeouts::{AwsTimeouts, TIMEOUT_ENV};
pub use uploads::DynamoUploadStore;
pub use webhooks::DynamoWebhookStore;

/// The state table's key attributes and index as the adapters spell them; the template declares
/// the same (`tests/template.rs`).
pub mod table_keys {
    pub use crate::attrs::{PARTITION_KEY, RC_AT, RC_PK, RECONCILE_INDEX, SORT_KEY, TTL_ATTRIBUTE};
}

//! Prism's AWS backend: the core ports over DynamoDB (jobs, idempotency records, API keys), SQS
//! (work queues), EventBridge Scheduler (deliveries past a queue delay) and S3 (attributes too
//! large for an item), plus the Lambda event glue. Clients
//! are built once from one `SdkConfig`; endpoints come from the standard `AWS_ENDPOINT_URL*`
//! variables, so the same code runs against AWS and an emulator.

mod attrs;
mod batches;
mod blobs;
mod files;
mod jobs;
mod keys;
mod provision;
mod queue;
mod schedules;
mod settings;
mod stages;

pub use batches::DynamoBatchStore;
pub use blobs::S3Blobs;
pub use files::DynamoFileStore;
pub use jobs::DynamoJobStore;
pub use keys::DynamoKeyStore;
pub use provision::{MAX_RECEIVE_COUNT, ProvisionError, provision};
pub use queue::{SqsWorkQueue, decode_work_item, encode_work_item};
pub use schedules::{EventBridgeScheduler, ScheduleTarget, at_expression, schedule_name};
pub use settings::{AwsBackend, AwsSettings, LONG_POLL, SettingsError};
pub use stages::StageQueues;

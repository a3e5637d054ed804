//! Resource names and clients of the AWS backend, read once at start.

use std::time::Duration;

use aws_config::BehaviorVersion;

use crate::batches::DynamoBatchStore;
use crate::blobs::S3Blobs;
use crate::files::DynamoFileStore;
use crate::jobs::DynamoJobStore;
use crate::keys::DynamoKeyStore;
use crate::queue::SqsWorkQueue;
use crate::schedules::{EventBridgeScheduler, ScheduleTarget};
use crate::stages::StageQueues;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing environment variables: {0}")]
    Missing(String),
}

/// Names of the resources the SAM template creates (or the test suite creates in the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    pub jobs_queue_url: String,
    pub jobs_dlq_url: String,
    /// The batch stages' queues and their dead-letter queues.
    pub plan_queue_url: String,
    pub plan_dlq_url: String,
    pub chunk_queue_url: String,
    pub chunk_dlq_url: String,
    pub finalize_queue_url: String,
    pub finalize_dlq_url: String,
    pub bucket: String,
    /// Emulators serve S3 by path (`http://host/bucket/key`), not by virtual host.
    pub s3_force_path_style: bool,
    pub schedules: ScheduleTarget,
}

impl AwsSettings {
    /// Reads every variable of [`AwsSettings::to_env`] (`PRISM_S3_FORCE_PATH_STYLE` is optional),
    /// reporting every missing one at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut missing = Vec::new();
        let mut need = |name: &str| {
            get(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                missing.push(name.to_owned());
                String::new()
            })
        };
        let settings = Self {
            table: need("PRISM_TABLE"),
            jobs_queue_url: need("PRISM_JOBS_QUEUE_URL"),
            jobs_dlq_url: need("PRISM_JOBS_DLQ_URL"),
            plan_queue_url: need("PRISM_PLAN_QUEUE_URL"),
            plan_dlq_url: need("PRISM_PLAN_DLQ_URL"),
            chunk_queue_url: need("PRISM_CHUNK_QUEUE_URL"),
            chunk_dlq_url: need("PRISM_CHUNK_DLQ_URL"),
            finalize_queue_url: need("PRISM_FINALIZE_QUEUE_URL"),
            finalize_dlq_url: need("PRISM_FINALIZE_DLQ_URL"),
            bucket: need("PRISM_BUCKET"),
            s3_force_path_style: get("PRISM_S3_FORCE_PATH_STYLE")
                .is_some_and(|v| v == "true" || v == "1"),
            schedules: ScheduleTarget {
                group: need("PRISM_SCHEDULE_GROUP"),
                queue_arn: need("PRISM_JOBS_QUEUE_ARN"),
                finalize_queue_arn: need("PRISM_FINALIZE_QUEUE_ARN"),
                role_arn: need("PRISM_SCHEDULER_ROLE_ARN"),
                dead_letter_arn: need("PRISM_SCHEDULES_DLQ_ARN"),
            },
        };
        if missing.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Missing(missing.join(", ")))
        }
    }
}

impl AwsSettings {
    /// The environment that names these resources, as the template sets it for every function.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("PRISM_TABLE", self.table.clone()),
            ("PRISM_JOBS_QUEUE_URL", self.jobs_queue_url.clone()),
            ("PRISM_JOBS_DLQ_URL", self.jobs_dlq_url.clone()),
            ("PRISM_PLAN_QUEUE_URL", self.plan_queue_url.clone()),
            ("PRISM_PLAN_DLQ_URL", self.plan_dlq_url.clone()),
            ("PRISM_CHUNK_QUEUE_URL", self.chunk_queue_url.clone()),
            ("PRISM_CHUNK_DLQ_URL", self.chunk_dlq_url.clone()),
            ("PRISM_FINALIZE_QUEUE_URL", self.finalize_queue_url.clone()),
            ("PRISM_FINALIZE_DLQ_URL", self.finalize_dlq_url.clone()),
            ("PRISM_BUCKET", self.bucket.clone()),
            (
                "PRISM_S3_FORCE_PATH_STYLE",
                self.s3_force_path_style.to_string(),
            ),
            ("PRISM_SCHEDULE_GROUP", self.schedules.group.clone()),
            ("PRISM_JOBS_QUEUE_ARN", self.schedules.queue_arn.clone()),
            (
                "PRISM_FINALIZE_QUEUE_ARN",
                self.schedules.finalize_queue_arn.clone(),
            ),
            ("PRISM_SCHEDULER_ROLE_ARN", self.schedules.role_arn.clone()),
            (
                "PRISM_SCHEDULES_DLQ_ARN",
                self.schedules.dead_letter_arn.clone(),
            ),
        ]
    }
}

/// Every AWS adapter, sharing one set of clients.
#[derive(Clone)]
pub struct AwsBackend {
    pub settings: AwsSettings,
    pub jobs: DynamoJobStore,
    pub files: DynamoFileStore,
    pub batches: DynamoBatchStore,
    pub blobs: S3Blobs,
    pub keys: DynamoKeyStore,
    /// The jobs queue.
    pub queue: SqsWorkQueue,
    pub plan_queue: SqsWorkQueue,
    pub chunk_queue: SqsWorkQueue,
    pub finalize_queue: SqsWorkQueue,
    /// Every queue, as the one `WorkQueue` the services send to.
    pub stages: StageQueues,
    /// The jobs queue's dead-letter queue.
    pub dead_letters: SqsWorkQueue,
    /// The batch stages' dead-letter queues.
    pub stage_dead_letters: Vec<SqsWorkQueue>,
    pub scheduler: EventBridgeScheduler,
    pub ssm: aws_sdk_ssm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// How long a receive waits for messages: long polling keeps an idle consumer cheap.
pub const LONG_POLL: Duration = Duration::from_secs(20);

impl AwsBackend {
    /// Loads credentials, region and endpoints the standard way and builds every client once.
    pub async fn connect(settings: AwsSettings, receive_wait: Duration) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(settings.s3_force_path_style)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&config);
        let blobs = S3Blobs::new(s3, settings.bucket.clone());
        let queue = |url: &String| SqsWorkQueue::new(sqs.clone(), url.clone(), receive_wait);
        let short = |url: &String| SqsWorkQueue::new(sqs.clone(), url.clone(), Duration::ZERO);
        Self {
            jobs: DynamoJobStore::new(dynamo.clone(), settings.table.clone(), blobs.clone()),
            files: DynamoFileStore::new(dynamo.clone(), settings.table.clone()),
            batches: DynamoBatchStore::new(dynamo.clone(), settings.table.clone()),
            blobs,
            keys: DynamoKeyStore::new(dynamo, settings.table.clone()),
            queue: queue(&settings.jobs_queue_url),
            plan_queue: queue(&settings.plan_queue_url),
            chunk_queue: queue(&settings.chunk_queue_url),
            finalize_queue: queue(&settings.finalize_queue_url),
            // Only sent to: its receives are short polls (see `StageQueues`).
            stages: StageQueues {
                jobs: short(&settings.jobs_queue_url),
                plan: short(&settings.plan_queue_url),
                chunks: short(&settings.chunk_queue_url),
                finalize: short(&settings.finalize_queue_url),
            },
            dead_letters: queue(&settings.jobs_dlq_url),
            stage_dead_letters: vec![
                queue(&settings.plan_dlq_url),
                queue(&settings.chunk_dlq_url),
                queue(&settings.finalize_dlq_url),
            ],
            scheduler: EventBridgeScheduler::new(
                aws_sdk_scheduler::Client::new(&config),
                settings.schedules.clone(),
            ),
            ssm: aws_sdk_ssm::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            settings,
        }
    }
}

//! Resource names and clients of the AWS backend, read once at start.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use prism_core::{PerStage, Stage};

use crate::batches::DynamoBatchStore;
use crate::blobs::S3Blobs;
use crate::files::DynamoFileStore;
use crate::jobs::DynamoJobStore;
use crate::keys::DynamoKeyStore;
use crate::queue::SqsWorkQueue;
use crate::recurring::{DynamoRecurringStore, EventBridgeRecurringTrigger};
use crate::schedules::{EventBridgeScheduler, ScheduleTarget};
use crate::stages::StageQueues;
use crate::timeouts::AwsTimeouts;
use crate::uploads::DynamoUploadStore;
use crate::webhooks::DynamoWebhookStore;

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("missing environment variables: {0}")]
    Missing(String),
    #[error("invalid environment variable {name}: {reason}")]
    Invalid { name: String, reason: String },
}

/// Names of the resources the SAM template creates (or the test suite creates in the emulator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    /// Each stage's queue.
    pub queue_urls: PerStage<String>,
    /// Each stage's dead-letter queue.
    pub dlq_urls: PerStage<String>,
    pub bucket: String,
    /// Emulators serve S3 by path (`http://host/bucket/key`), not by virtual host.
    pub s3_force_path_style: bool,
    pub schedules: ScheduleTarget,
    /// How long each AWS call may take.
    pub timeouts: AwsTimeouts,
}

/// The environment variables that name the resources: the one spelling of each, used by
/// [`AwsSettings::from_lookup`], [`AwsSettings::to_env`] and the lists below.
mod var {
    pub const TABLE: &str = "PRISM_TABLE";
    pub const JOBS_QUEUE_URL: &str = "PRISM_JOBS_QUEUE_URL";
    pub const JOBS_DLQ_URL: &str = "PRISM_JOBS_DLQ_URL";
    pub const PLAN_QUEUE_URL: &str = "PRISM_PLAN_QUEUE_URL";
    pub const PLAN_DLQ_URL: &str = "PRISM_PLAN_DLQ_URL";
    pub const CHUNK_QUEUE_URL: &str = "PRISM_CHUNK_QUEUE_URL";
    pub const CHUNK_DLQ_URL: &str = "PRISM_CHUNK_DLQ_URL";
    pub const FINALIZE_QUEUE_URL: &str = "PRISM_FINALIZE_QUEUE_URL";
    pub const FINALIZE_DLQ_URL: &str = "PRISM_FINALIZE_DLQ_URL";
    pub const WEBHOOKS_QUEUE_URL: &str = "PRISM_WEBHOOKS_QUEUE_URL";
    pub const WEBHOOKS_DLQ_URL: &str = "PRISM_WEBHOOKS_DLQ_URL";
    pub const BUCKET: &str = "PRISM_BUCKET";
    pub const S3_FORCE_PATH_STYLE: &str = "PRISM_S3_FORCE_PATH_STYLE";
    pub const SCHEDULE_GROUP: &str = "PRISM_SCHEDULE_GROUP";
    pub const JOBS_QUEUE_ARN: &str = "PRISM_JOBS_QUEUE_ARN";
    pub const FINALIZE_QUEUE_ARN: &str = "PRISM_FINALIZE_QUEUE_ARN";
    pub const SCHEDULER_ROLE_ARN: &str = "PRISM_SCHEDULER_ROLE_ARN";
    pub const SCHEDULES_DLQ_ARN: &str = "PRISM_SCHEDULES_DLQ_ARN";
}

/// The variables naming a stage's queue and its dead-letter queue.
fn stage_vars(stage: Stage) -> (&'static str, &'static str) {
    match stage {
        Stage::Jobs => (var::JOBS_QUEUE_URL, var::JOBS_DLQ_URL),
        Stage::Plan => (var::PLAN_QUEUE_URL, var::PLAN_DLQ_URL),
        Stage::Chunks => (var::CHUNK_QUEUE_URL, var::CHUNK_DLQ_URL),
        Stage::Finalize => (var::FINALIZE_QUEUE_URL, var::FINALIZE_DLQ_URL),
        Stage::Webhooks => (var::WEBHOOKS_QUEUE_URL, var::WEBHOOKS_DLQ_URL),
    }
}

impl AwsSettings {
    /// Every variable [`AwsSettings::from_lookup`] requires: the SAM template must set each for
    /// every function (`tests/template.rs` checks it).
    pub const REQUIRED_ENV: [&'static str; 17] = [
        var::TABLE,
        var::JOBS_QUEUE_URL,
        var::JOBS_DLQ_URL,
        var::PLAN_QUEUE_URL,
        var::PLAN_DLQ_URL,
        var::CHUNK_QUEUE_URL,
        var::CHUNK_DLQ_URL,
        var::FINALIZE_QUEUE_URL,
        var::FINALIZE_DLQ_URL,
        var::WEBHOOKS_QUEUE_URL,
        var::WEBHOOKS_DLQ_URL,
        var::BUCKET,
        var::SCHEDULE_GROUP,
        var::JOBS_QUEUE_ARN,
        var::FINALIZE_QUEUE_ARN,
        var::SCHEDULER_ROLE_ARN,
        var::SCHEDULES_DLQ_ARN,
    ];
    /// Variables [`AwsSettings::from_lookup`] reads when present: path-style S3 is for
    /// emulators, so the template does not set it. The timeouts ([`crate::TIMEOUT_ENV`]) are read
    /// when present too; they are tuning, not names, so [`AwsSettings::to_env`] leaves them out.
    pub const OPTIONAL_ENV: [&'static str; 1] = [var::S3_FORCE_PATH_STYLE];

    /// Reads every variable of [`AwsSettings::to_env`] ([`AwsSettings::OPTIONAL_ENV`] may be
    /// absent), reporting every missing one at once.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let timeouts = AwsTimeouts::from_lookup(&get)?;
        let mut missing = Vec::new();
        let mut need = |name: &str| {
            get(name).filter(|v| !v.is_empty()).unwrap_or_else(|| {
                missing.push(name.to_owned());
                String::new()
            })
        };
        let table = need(var::TABLE);
        // Each stage's queue, then its DLQ: the order of `REQUIRED_ENV`.
        let urls = PerStage::from_fn(|stage| {
            let (queue, dlq) = stage_vars(stage);
            (need(queue), need(dlq))
        });
        let settings = Self {
            table,
            queue_urls: urls.map(|_, (queue, _)| queue.clone()),
            dlq_urls: urls.map(|_, (_, dlq)| dlq.clone()),
            bucket: need(var::BUCKET),
            s3_force_path_style: get(var::S3_FORCE_PATH_STYLE)
                .is_some_and(|v| v == "true" || v == "1"),
            schedules: ScheduleTarget {
                group: need(var::SCHEDULE_GROUP),
                queue_arn: need(var::JOBS_QUEUE_ARN),
                finalize_queue_arn: need(var::FINALIZE_QUEUE_ARN),
                role_arn: need(var::SCHEDULER_ROLE_ARN),
                dead_letter_arn: need(var::SCHEDULES_DLQ_ARN),
            },
            timeouts,
        };
        if missing.is_empty() {
            Ok(settings)
        } else {
            Err(SettingsError::Missing(missing.join(", ")))
        }
    }
}

impl AwsSettings {
    /// The environment that names these resources, as the template sets it for every function
    /// (plus [`AwsSettings::OPTIONAL_ENV`]).
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(var::TABLE, self.table.clone())];
        for stage in Stage::ALL {
            let (queue, dlq) = stage_vars(stage);
            env.push((queue, self.queue_urls.get(stage).clone()));
            env.push((dlq, self.dlq_urls.get(stage).clone()));
        }
        env.extend([
            (var::BUCKET, self.bucket.clone()),
            (
                var::S3_FORCE_PATH_STYLE,
                self.s3_force_path_style.to_string(),
            ),
            (var::SCHEDULE_GROUP, self.schedules.group.clone()),
            (var::JOBS_QUEUE_ARN, self.schedules.queue_arn.clone()),
            (
                var::FINALIZE_QUEUE_ARN,
                self.schedules.finalize_queue_arn.clone(),
            ),
            (var::SCHEDULER_ROLE_ARN, self.schedules.role_arn.clone()),
            (
                var::SCHEDULES_DLQ_ARN,
                self.schedules.dead_letter_arn.clone(),
            ),
        ]);
        env
    }
}

/// Every AWS adapter, sharing one set of clients.
#[derive(Clone)]
pub struct AwsBackend {
    pub settings: AwsSettings,
    pub jobs: DynamoJobStore,
    pub files: DynamoFileStore,
    pub uploads: DynamoUploadStore,
    pub batches: DynamoBatchStore,
    pub blobs: S3Blobs,
    pub keys: DynamoKeyStore,
    pub webhooks: DynamoWebhookStore,
    /// Each stage's queue, as its consumer drains it (long polls).
    pub queues: PerStage<SqsWorkQueue>,
    /// Every queue, as the one `WorkQueue` the services send to.
    pub stages: StageQueues,
    /// Each stage's dead-letter queue.
    pub dead_letters: PerStage<SqsWorkQueue>,
    pub scheduler: EventBridgeScheduler,
    pub recurring: DynamoRecurringStore,
    pub recurring_trigger: EventBridgeRecurringTrigger,
    pub ssm: aws_sdk_ssm::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

/// How long a receive waits for messages: long polling keeps an idle consumer cheap.
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// Tries of every AWS call, the first included, in the SDK's standard retry mode: throttling,
/// 5xx, connection resets and timeouts are tried again after an exponential backoff with
/// jitter (bench/faults.sh `aws-proxy` shows it holds under injected faults). A write tried
/// again after its answer was lost meets its own success: transactions carry the SDK's
/// `ClientRequestToken`, and creates and job claims read the refusal they caused as done.
pub const SDK_MAX_ATTEMPTS: u32 = 3;

impl AwsBackend {
    /// Loads credentials, region and endpoints the standard way and builds every client once,
    /// each with the settings' timeouts (S3's its own, longer ones).
    pub async fn connect(settings: AwsSettings, receive_wait: Duration) -> Self {
        let config = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(SDK_MAX_ATTEMPTS))
            .timeout_config(settings.timeouts.sdk())
            .load()
            .await;
        let dynamo = aws_sdk_dynamodb::Client::new(&config);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(settings.s3_force_path_style)
                .timeout_config(settings.timeouts.s3())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&config);
        let blobs = S3Blobs::new(s3, settings.bucket.clone());
        let queue = |url: &String| SqsWorkQueue::new(sqs.clone(), url.clone(), receive_wait);
        let short = |url: &String| SqsWorkQueue::new(sqs.clone(), url.clone(), Duration::ZERO);
        // The outbox's immediate relay: a terminal write that recorded an event sends its
        // trigger here; the reconciler finds any trigger lost in between.
        let webhook_trigger = short(settings.queue_urls.get(Stage::Webhooks));
        Self {
            jobs: DynamoJobStore::new(dynamo.clone(), settings.table.clone(), blobs.clone())
                .with_webhook_trigger(webhook_trigger.clone()),
            files: DynamoFileStore::new(dynamo.clone(), settings.table.clone()),
            uploads: DynamoUploadStore::new(dynamo.clone(), settings.table.clone()),
            batches: DynamoBatchStore::new(dynamo.clone(), settings.table.clone())
                .with_webhook_trigger(webhook_trigger.clone()),
            blobs: blobs.clone(),
            webhooks: DynamoWebhookStore::new(dynamo.clone(), settings.table.clone())
                .with_webhook_trigger(webhook_trigger.clone()),
            keys: DynamoKeyStore::new(dynamo.clone(), settings.table.clone()),
            queues: settings.queue_urls.map(|_, url| queue(url)),
            // Only sent to: its receives are short polls (see `StageQueues`).
            stages: StageQueues {
                queues: settings.queue_urls.map(|_, url| short(url)),
            },
            dead_letters: settings.dlq_urls.map(|_, url| queue(url)),
            scheduler: EventBridgeScheduler::new(
                aws_sdk_scheduler::Client::new(&config),
                settings.schedules.clone(),
            ),
            recurring: DynamoRecurringStore::new(
                dynamo.clone(),
                settings.table.clone(),
                blobs.clone(),
            ),
            recurring_trigger: EventBridgeRecurringTrigger::new(
                aws_sdk_scheduler::Client::new(&config),
                settings.schedules.clone(),
            ),
            ssm: aws_sdk_ssm::Client::new(&config),
            secrets: aws_sdk_secretsmanager::Client::new(&config),
            settings,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)] // test code

    use super::*;

    #[test]
    fn to_env_and_from_lookup_name_the_same_variables() {
        let env: std::collections::HashMap<&str, String> = AwsSettings::REQUIRED_ENV
            .iter()
            .map(|name| (*name, format!("value-of-{name}")))
            .collect();
        let settings = AwsSettings::from_lookup(|name| env.get(name).cloned()).unwrap();
        let mut written: Vec<&str> = settings.to_env().into_iter().map(|(n, _)| n).collect();
        let mut expected: Vec<&str> = AwsSettings::REQUIRED_ENV
            .iter()
            .chain(AwsSettings::OPTIONAL_ENV.iter())
            .copied()
            .collect();
        written.sort_unstable();
        expected.sort_unstable();
        assert_eq!(written, expected);
        for (name, value) in settings.to_env() {
            if !AwsSettings::OPTIONAL_ENV.contains(&name) {
                assert_eq!(
                    value,
                    format!("value-of-{name}"),
                    "{name} read into another field"
                );
            }
        }
    }

    #[test]
    fn every_missing_variable_is_reported() {
        let Err(SettingsError::Missing(missing)) = AwsSettings::from_lookup(|_| None) else {
            panic!("nothing is set");
        };
        assert_eq!(missing, AwsSettings::REQUIRED_ENV.join(", "));
    }
}

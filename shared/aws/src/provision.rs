//! Creates the backend's resources by API (the table with its index and TTL, the work queues with
//! their dead-letter queues, the schedule group with its dead-letter queue, the bucket), as
//! `infra/template.yaml` declares them for AWS: for the test suites, which give every test its
//! own uniquely named set on the emulator.

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::schedules::ScheduleTarget;
use crate::settings::AwsSettings;

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("could not create {what}: {detail}")]
    Create { what: &'static str, detail: String },
}

fn failed<E>(what: &'static str) -> impl FnOnce(E) -> ProvisionError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ProvisionError::Create {
        what,
        detail: aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string(),
    }
}

/// Deliveries of one message before SQS moves it to the dead-letter queue: above the worker's
/// attempts, since every long retry wait and every lease-busy redelivery is a receive.
pub const MAX_RECEIVE_COUNT: u32 = 10;
/// Dead letters are kept for SQS's maximum, 14 days.
const DLQ_RETENTION_SECONDS: u32 = 14 * 24 * 3600;

/// Creates a table, queue pair and bucket named `<prefix>-…`, and returns their settings.
pub async fn provision(
    prefix: &str,
    visibility_seconds: u32,
) -> Result<AwsSettings, ProvisionError> {
    let config = aws_config::defaults(BehaviorVersion::latest()).load().await;
    let dynamo = aws_sdk_dynamodb::Client::new(&config);
    let sqs = aws_sdk_sqs::Client::new(&config);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let table = format!("{prefix}-state");
    let key = |name: &str, kind| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(kind)
            .build()
            .map_err(failed("key schema"))
    };
    let attr = |name: &str, kind| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(kind)
            .build()
            .map_err(failed("attribute definition"))
    };
    dynamo
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash)?)
        .key_schema(key("sk", KeyType::Range)?)
        .attribute_definitions(attr("pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("sk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("rc_pk", ScalarAttributeType::S)?)
        .attribute_definitions(attr("rc_at", ScalarAttributeType::N)?)
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("reconcile")
                .key_schema(key("rc_pk", KeyType::Hash)?)
                .key_schema(key("rc_at", KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::KeysOnly)
                        .build(),
                )
                .build()
                .map_err(failed("index"))?,
        )
        .send()
        .await
        .map_err(failed("table"))?;
    dynamo
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .attribute_name("ttl")
                .enabled(true)
                .build()
                .map_err(failed("ttl"))?,
        )
        .send()
        .await
        .map_err(failed("ttl"))?;

    let (queue_url, dlq_url) =
        queue_pair(&sqs, &format!("{prefix}-jobs"), visibility_seconds).await?;
    let (plan_queue_url, plan_dlq_url) =
        queue_pair(&sqs, &format!("{prefix}-plan"), visibility_seconds).await?;
    let (chunk_queue_url, chunk_dlq_url) =
        queue_pair(&sqs, &format!("{prefix}-chunks"), visibility_seconds).await?;
    let (finalize_queue_url, finalize_dlq_url) =
        queue_pair(&sqs, &format!("{prefix}-finalize"), visibility_seconds).await?;
    let finalize_queue_arn = queue_arn(&sqs, &finalize_queue_url).await?;
    let jobs_queue_arn = queue_arn(&sqs, &queue_url).await?;
    let schedules_dlq_url = sqs
        .create_queue()
        .queue_name(format!("{prefix}-schedules-dlq"))
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )
        .send()
        .await
        .map_err(failed("schedules dead-letter queue"))?
        .queue_url
        .unwrap_or_default();
    let schedules_dlq_arn = queue_arn(&sqs, &schedules_dlq_url).await?;
    let group = format!("{prefix}-schedules");
    aws_sdk_scheduler::Client::new(&config)
        .create_schedule_group()
        .name(&group)
        .send()
        .await
        .map_err(failed("schedule group"))?;

    let bucket = format!("{prefix}-data");
    s3.create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .map_err(failed("bucket"))?;
    Ok(AwsSettings {
        table,
        jobs_queue_url: queue_url,
        jobs_dlq_url: dlq_url,
        plan_queue_url,
        plan_dlq_url,
        chunk_queue_url,
        chunk_dlq_url,
        finalize_queue_url,
        finalize_dlq_url,
        bucket,
        s3_force_path_style: true,
        schedules: ScheduleTarget {
            group,
            // The template creates the real role; emulators accept any role ARN.
            role_arn: format!(
                "arn:aws:iam::{}:role/{prefix}-scheduler",
                account_of(&jobs_queue_arn)
            ),
            queue_arn: jobs_queue_arn,
            finalize_queue_arn,
            dead_letter_arn: schedules_dlq_arn,
        },
    })
}

/// A work queue and its dead-letter queue, redriving after [`MAX_RECEIVE_COUNT`] receives.
async fn queue_pair(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    visibility_seconds: u32,
) -> Result<(String, String), ProvisionError> {
    let dlq_url = sqs
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .attributes(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_string(),
        )
        .send()
        .await
        .map_err(failed("dead-letter queue"))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": MAX_RECEIVE_COUNT});
    let queue_url = sqs
        .create_queue()
        .queue_name(name)
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_seconds.to_string(),
        )
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await
        .map_err(failed("work queue"))?
        .queue_url
        .unwrap_or_default();
    Ok((queue_url, dlq_url))
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, ProvisionError> {
    Ok(sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(failed("queue attributes"))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default())
}

/// The account field of an ARN (`arn:partition:service:region:account:resource`).
fn account_of(arn: &str) -> &str {
    arn.split(':').nth(4).unwrap_or_default()
}

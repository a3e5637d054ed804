//! Stacks provisioned from `infra/template.yaml` on the emulator that `scripts/test.sh` starts
//! (it exports `AWS_ENDPOINT_URL`), read back from SQS, DynamoDB, SSM and Secrets Manager and
//! compared with the template; and `prism-provision`'s command line, whose refusals need no
//! emulator.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_dynamodb::types::{KeyType, ProjectionType, ScalarAttributeType, TimeToLiveStatus};
use aws_sdk_sqs::types::QueueAttributeName;
use prism_app::aws::{ConfigSource, ProviderKeys, connect_aws};
use prism_aws::stack::{AttributeKind, KeyAttribute, Projection};
use prism_aws::{AwsSettings, ProvisionOptions, ProvisionedStack, provision, provision_stack};

static NEXT: AtomicU32 = AtomicU32::new(0);

fn emulator() {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run scripts/test.sh (it starts the emulator), or start `.venv/bin/moto_server -H 127.0.0.1 -p PORT` and export AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    );
}

fn prefix(kind: &str) -> String {
    format!(
        "{kind}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// The queue's attributes as SQS reports them.
async fn queue_attributes(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> std::collections::HashMap<QueueAttributeName, String> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default()
}

fn scalar_kind(kind: AttributeKind) -> ScalarAttributeType {
    match kind {
        AttributeKind::String => ScalarAttributeType::S,
        AttributeKind::Number => ScalarAttributeType::N,
        AttributeKind::Binary => ScalarAttributeType::B,
    }
}

fn key_schema(hash: &KeyAttribute, range: Option<&KeyAttribute>) -> Vec<(String, KeyType)> {
    std::iter::once((hash.name.clone(), KeyType::Hash))
        .chain(range.map(|r| (r.name.clone(), KeyType::Range)))
        .collect()
}

async fn check_queues(stack: &ProvisionedStack, visibility_override: Option<u32>) {
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let specs = stack.template().queues().unwrap();
    assert!(!specs.is_empty());
    for spec in specs {
        let id = &spec.logical_id;
        let physical = stack.resource(id).unwrap();
        assert!(
            physical.name.starts_with(&format!("{}-", stack.prefix)),
            "{id}"
        );
        let attributes = queue_attributes(&sqs, stack.queue_url(id).unwrap()).await;
        let get = |name: QueueAttributeName| attributes.get(&name).cloned().unwrap_or_default();
        assert_eq!(get(QueueAttributeName::QueueArn), physical.arn, "{id}");
        assert_eq!(
            get(QueueAttributeName::VisibilityTimeout),
            visibility_override
                .unwrap_or(spec.visibility_seconds)
                .to_string(),
            "{id}"
        );
        assert_eq!(
            get(QueueAttributeName::MessageRetentionPeriod),
            spec.retention_seconds.to_string(),
            "{id}"
        );
        assert_eq!(
            get(QueueAttributeName::DelaySeconds),
            spec.delay_seconds.to_string(),
            "{id}"
        );
        match &spec.redrive {
            Some(redrive) => {
                let policy: serde_json::Value =
                    serde_json::from_str(&get(QueueAttributeName::RedrivePolicy)).unwrap();
                assert_eq!(
                    policy["deadLetterTargetArn"].as_str(),
                    Some(
                        stack
                            .resource(&redrive.dead_letter_queue)
                            .unwrap()
                            .arn
                            .as_str()
                    ),
                    "{id}"
                );
                // SQS answers the count as a number, some emulators as a string.
                let count = match &policy["maxReceiveCount"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap(),
                    serde_json::Value::String(s) => s.parse().unwrap(),
                    other => panic!("{id}: maxReceiveCount {other}"),
                };
                assert_eq!(count, u64::from(redrive.max_receive_count), "{id}");
            }
            None => assert!(
                !attributes.contains_key(&QueueAttributeName::RedrivePolicy),
                "{id} redrives, unlike the template's"
            ),
        }
    }
}

async fn check_table(stack: &ProvisionedStack) {
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk().await);
    let spec = stack.template().table().unwrap();
    let physical = stack.resource(&spec.logical_id).unwrap();
    let table = dynamo
        .describe_table()
        .table_name(&physical.name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap();
    assert_eq!(table.table_arn.as_deref(), Some(physical.arn.as_str()));
    let schema = |keys: &[aws_sdk_dynamodb::types::KeySchemaElement]| -> Vec<(String, KeyType)> {
        keys.iter()
            .map(|k| (k.attribute_name.clone(), k.key_type.clone()))
            .collect()
    };
    assert_eq!(
        schema(table.key_schema()),
        key_schema(&spec.hash_key, spec.range_key.as_ref())
    );
    for attribute in table.attribute_definitions() {
        let declared = std::iter::once(&spec.hash_key)
            .chain(spec.range_key.iter())
            .chain(
                spec.global_indexes
                    .iter()
                    .flat_map(|i| std::iter::once(&i.hash_key).chain(i.range_key.iter())),
            )
            .find(|k| k.name == attribute.attribute_name)
            .unwrap_or_else(|| panic!("{} is not a key of the template", attribute.attribute_name));
        assert_eq!(attribute.attribute_type, scalar_kind(declared.kind));
    }
    let indexes = table.global_secondary_indexes();
    assert_eq!(indexes.len(), spec.global_indexes.len());
    for index in &spec.global_indexes {
        let found = indexes
            .iter()
            .find(|i| i.index_name() == Some(index.name.as_str()))
            .unwrap_or_else(|| panic!("no index {}", index.name));
        assert_eq!(
            schema(found.key_schema()),
            key_schema(&index.hash_key, index.range_key.as_ref())
        );
        let projection = found.projection().and_then(|p| p.projection_type());
        let expected = match index.projection {
            Projection::KeysOnly => ProjectionType::KeysOnly,
            Projection::All => ProjectionType::All,
            Projection::Include(_) => ProjectionType::Include,
        };
        assert_eq!(projection, Some(&expected), "{}", index.name);
    }
    let ttl = dynamo
        .describe_time_to_live()
        .table_name(&physical.name)
        .send()
        .await
        .unwrap()
        .time_to_live_description
        .unwrap();
    assert_eq!(ttl.attribute_name, spec.ttl_attribute);
    assert_eq!(ttl.time_to_live_status, Some(TimeToLiveStatus::Enabled));
}

/// Every function's environment resolves, and agrees with the settings on every variable the
/// backend reads.
fn check_function_envs(stack: &ProvisionedStack) {
    let settings_env = stack.settings.to_env();
    for function in stack.template().functions().unwrap() {
        let env = stack.function_env(&function.logical_id).unwrap();
        for name in AwsSettings::REQUIRED_ENV {
            let from_function = env.iter().find(|(n, _)| n == name).map(|(_, v)| v);
            let from_settings = settings_env
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v);
            assert_eq!(
                from_function, from_settings,
                "{}: {name}",
                function.logical_id
            );
        }
        let by_binary = stack
            .function_env(function.binary.as_deref().unwrap())
            .unwrap();
        assert_eq!(by_binary, env);
    }
}

#[tokio::test]
async fn a_stack_has_exactly_the_templates_queues_and_table() {
    emulator();
    let options = ProvisionOptions {
        visibility_override: None,
        config_toml: Some("[jobs]\nretention = \"1d\"\n".into()),
    };
    let stack = provision_stack(&prefix("stack"), &options).await.unwrap();
    check_queues(&stack, None).await;
    check_table(&stack).await;
    check_function_envs(&stack);

    // The configuration parameter holds the caller's text, under the template's name for it.
    let parameter = &stack.template().ssm_parameters().unwrap()[0];
    let physical = stack.resource(&parameter.logical_id).unwrap();
    assert_eq!(physical.name, format!("/{}/config", stack.prefix));
    let ssm = aws_sdk_ssm::Client::new(&sdk().await);
    let value = ssm
        .get_parameter()
        .name(&physical.name)
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
        .value;
    assert_eq!(value, options.config_toml);

    // What the emulator has no use for is listed, not silently dropped.
    let skipped: Vec<&str> = stack
        .not_provisioned()
        .iter()
        .map(|(_, kind)| kind.as_str())
        .collect();
    assert!(skipped.contains(&"AWS::Serverless::Function"));
    assert!(skipped.contains(&"AWS::Lambda::EventSourceMapping"));
    assert!(!skipped.contains(&"AWS::SQS::Queue"));
}

#[tokio::test]
async fn a_function_started_with_its_template_environment_reads_the_templates_config() {
    emulator();
    let stack = provision_stack(&prefix("fn"), &ProvisionOptions::default())
        .await
        .unwrap();
    let mut env = stack.function_env("api").unwrap();
    env.extend(stack.client_env());
    let lookup = move |name: &str| {
        env.iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    // As the api Lambda starts: settings from the environment, the configuration from the SSM
    // parameter, the provider key from the (stand-in) secret the configuration names.
    let app = connect_aws(
        ConfigSource::Parameter,
        lookup,
        Duration::ZERO,
        ProviderKeys::Fetch,
    )
    .await
    .unwrap();
    assert_eq!(app.backend.settings, stack.settings);
    assert_eq!(app.config.providers.len(), 1);
    let secret = app.config.providers[0].api_key_secret.clone().unwrap();
    assert!(secret.contains(":secretsmanager:"), "{secret}");
    assert_eq!(
        app.config.job_policy().retention,
        Duration::from_secs(7 * 24 * 3600),
        "the template's RetentionDays default"
    );
}

#[tokio::test]
async fn the_old_entry_point_overrides_the_visibility_and_nothing_else() {
    emulator();
    let prefix = prefix("old");
    let settings = provision(&prefix, 7).await.unwrap();
    assert!(settings.s3_force_path_style);
    let sqs = aws_sdk_sqs::Client::new(&sdk().await);
    let jobs = prism_core::Stage::Jobs;
    for url in [settings.queue_urls.get(jobs), settings.dlq_urls.get(jobs)] {
        let attributes = queue_attributes(&sqs, url).await;
        assert_eq!(
            attributes.get(&QueueAttributeName::VisibilityTimeout),
            Some(&"7".to_owned())
        );
    }
    let dlq = queue_attributes(&sqs, settings.dlq_urls.get(jobs)).await;
    assert_eq!(
        dlq.get(&QueueAttributeName::MessageRetentionPeriod),
        Some(&"1209600".to_owned())
    );
}

// ---------------------------------------------------------------------------------------------
// prism-provision
// ---------------------------------------------------------------------------------------------

fn prism_provision(args: &[&str], endpoint: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_prism-provision"));
    command
        .args(args)
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
    if let Some(endpoint) = endpoint {
        command.env("AWS_ENDPOINT_URL", endpoint);
    }
    command.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_prints_usage_and_creates_nothing() {
    let output = prism_provision(&["--help"], None);
    assert_eq!(output.status.code(), Some(0));
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "PREFIX",
        "--visibility",
        "--config",
        "--env-for",
        "--allow-real-aws-account",
    ] {
        assert!(text.contains(flag), "--help lacks {flag}:\n{text}");
    }
}

#[test]
fn without_an_endpoint_it_refuses() {
    let output = prism_provision(&["refused"], None);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("AWS_ENDPOINT_URL"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn mistakes_are_refused_before_anything_is_created() {
    // An endpoint nothing listens on: reaching it would be an error other than these.
    let nowhere = Some("http://127.0.0.1:9");
    let cases: [&[&str]; 5] = [
        &[],
        &["p", "--env-for", "no-such-function"],
        &["p", "--config", "/nonexistent/prism.toml"],
        &["p", "--allow-real-aws-account", "123"],
        &["p", "--visibility", "5", "--template-visibility"],
    ];
    for args in cases {
        let output = prism_provision(args, nowhere);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn env_for_prints_the_functions_environment() {
    emulator();
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    let output = prism_provision(
        &[&prefix("cli"), "--env-for", "async-worker"],
        Some(&endpoint),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let text = String::from_utf8_lossy(&output.stdout);
    let names: Vec<&str> = text
        .lines()
        .map(|line| line.split_once('=').unwrap().0)
        .collect();
    for name in AwsSettings::REQUIRED_ENV
        .iter()
        .chain([&prism_app::aws::CONFIG_PARAMETER_ENV])
        .chain(AwsSettings::OPTIONAL_ENV.iter())
    {
        assert!(names.contains(name), "{name} missing from:\n{text}");
    }
    assert!(!names.contains(&"PRISM_BACKEND"), "not prism's environment");
}

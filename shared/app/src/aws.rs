//! The AWS backend's one wiring function ([`connect_aws`]): resource names from the environment,
//! the routing configuration from a file or an SSM parameter, provider keys from Secrets
//! Manager, and the core's dependencies over the DynamoDB/SQS/S3 adapters. Every Lambda calls
//! it at init through [`connect_lambda`]; `prism serve --backend aws` calls it directly.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prism_aws::{AwsBackend, AwsSettings, SettingsError};
use prism_core::deps::{Adapters, Deps};
use prism_core::{Clock, SystemClock};
use prism_upstream::{HttpUpstream, HttpWebhookSender, UpstreamBuildError};

use crate::config::{Config, ConfigError};

/// Names the SSM parameter holding the TOML configuration, on Lambda.
pub const CONFIG_PARAMETER_ENV: &str = "PRISM_CONFIG_PARAMETER";

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read SSM parameter {name}: {detail}")]
    Parameter { name: String, detail: String },
    #[error("cannot read secret {id}: {detail}")]
    Secret { id: String, detail: String },
    #[error(transparent)]
    Upstream(#[from] UpstreamBuildError),
}

/// Everything an AWS entry point needs, built once.
#[derive(Clone)]
pub struct AwsApp {
    pub config: Config,
    pub backend: AwsBackend,
    pub deps: Deps,
}

/// Where the configuration comes from.
pub enum ConfigSource {
    /// Already loaded (`prism serve --backend aws --config FILE`).
    Loaded(Box<Config>),
    /// The SSM parameter named by `PRISM_CONFIG_PARAMETER`, or the defaults without one (Lambda).
    Parameter,
}

/// Whether an entry point reads the provider keys. Those that never call the upstream
/// (reconciler, dead letters) skip them, so their roles need no access to the secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKeys {
    Fetch,
    Skip,
}

/// What every Lambda calls at init: the configuration from the SSM parameter named by
/// `PRISM_CONFIG_PARAMETER` (the defaults without one), names from the process environment, and
/// no receive wait (Lambda polls the queues itself; no function receives).
pub async fn connect_lambda(keys: ProviderKeys) -> Result<AwsApp, AppError> {
    connect_aws(
        ConfigSource::Parameter,
        |name| std::env::var(name).ok(),
        Duration::ZERO,
        keys,
    )
    .await
}

/// Connects to AWS (or the emulator named by `AWS_ENDPOINT_URL`) and builds the dependencies.
/// `receive_wait` is how long queue receives long-poll.
pub async fn connect_aws(
    source: ConfigSource,
    env: impl Fn(&str) -> Option<String>,
    receive_wait: Duration,
    keys: ProviderKeys,
) -> Result<AwsApp, AppError> {
    let settings = AwsSettings::from_lookup(&env)?;
    let backend = AwsBackend::connect(settings, receive_wait).await;
    let config = match source {
        ConfigSource::Loaded(config) => *config,
        ConfigSource::Parameter => match env(CONFIG_PARAMETER_ENV) {
            Some(name) => load_parameter(&backend, &name).await?,
            None => Config::default(),
        },
    };
    let secrets = match keys {
        ProviderKeys::Fetch => fetch_secrets(&backend, &config).await?,
        ProviderKeys::Skip => HashMap::new(),
    };
    let upstream = HttpUpstream::new(config.providers(&env, &secrets), config.upstream_options())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapters = Adapters {
        jobs: Arc::new(backend.jobs.clone()),
        queue: Arc::new(backend.stages.clone()),
        scheduler: Arc::new(backend.scheduler.clone()),
        batches: Arc::new(backend.batches.clone()),
        files: Arc::new(backend.files.clone()),
        blobs: Arc::new(backend.blobs.clone()),
        webhooks: Arc::new(backend.webhooks.clone()),
        webhook_sender: Arc::new(HttpWebhookSender::new()),
        recurring: Arc::new(backend.recurring.clone()),
        recurring_trigger: Arc::new(backend.recurring_trigger.clone()),
        uploads: Arc::new(backend.uploads.clone()),
    };
    let upstream = Arc::new(upstream);
    let deps = Deps::new(adapters, upstream.clone(), clock, config.aws_policies())
        .with_provider_batches(upstream);
    Ok(AwsApp {
        config,
        backend,
        deps,
    })
}

async fn load_parameter(backend: &AwsBackend, name: &str) -> Result<Config, AppError> {
    let out = backend
        .ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| AppError::Parameter {
            name: name.to_owned(),
            detail: aws_sdk_ssm::error::DisplayErrorContext(e).to_string(),
        })?;
    let text = out.parameter.and_then(|p| p.value).unwrap_or_default();
    Ok(Config::parse(&text, name)?)
}

async fn fetch_secrets(
    backend: &AwsBackend,
    config: &Config,
) -> Result<HashMap<String, String>, AppError> {
    let mut secrets = HashMap::new();
    for id in config.provider_secrets() {
        if secrets.contains_key(id) {
            continue;
        }
        let out = backend
            .secrets
            .get_secret_value()
            .secret_id(id)
            .send()
            .await
            .map_err(|e| AppError::Secret {
                id: id.to_owned(),
                detail: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            })?;
        if let Some(value) = out.secret_string {
            secrets.insert(id.to_owned(), value);
        }
    }
    Ok(secrets)
}

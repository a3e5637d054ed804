//! Wiring of the AWS backend: resource names from the environment, the routing configuration
//! from a file or an SSM parameter, provider keys from Secrets Manager, and the core's
//! dependencies over the DynamoDB/SQS/S3 adapters. Used by every Lambda at init and by
//! `prism serve --backend aws`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prism_aws::{AwsBackend, AwsSettings, SettingsError};
use prism_core::deps::Deps;
use prism_core::gate::ModelGate;
use prism_core::ids::IdGenerator;
use prism_core::{Clock, SystemClock};
use prism_upstream::{HttpUpstream, UpstreamBuildError, UpstreamOptions};

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

/// Connects to AWS (or the emulator named by `AWS_ENDPOINT_URL`) and builds the dependencies,
/// provider keys included. `receive_wait` is how long queue receives long-poll.
pub async fn connect_aws(
    source: ConfigSource,
    env: impl Fn(&str) -> Option<String>,
    receive_wait: Duration,
) -> Result<AwsApp, AppError> {
    connect(source, env, receive_wait, ProviderKeys::Fetch).await
}

/// [`connect_aws`] for entry points that never call the upstream (reconciler, dead letters):
/// provider keys are not read, so their roles need no access to the secret.
pub async fn connect_aws_without_provider_keys(
    source: ConfigSource,
    env: impl Fn(&str) -> Option<String>,
    receive_wait: Duration,
) -> Result<AwsApp, AppError> {
    connect(source, env, receive_wait, ProviderKeys::Skip).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProviderKeys {
    Fetch,
    Skip,
}

async fn connect(
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
    let upstream = HttpUpstream::new(config.providers(&env, &secrets), UpstreamOptions::default())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let deps = Deps {
        jobs: Arc::new(backend.jobs.clone()),
        queue: Arc::new(backend.stages.clone()),
        scheduler: Arc::new(backend.scheduler.clone()),
        batches: Arc::new(backend.batches.clone()),
        files: Arc::new(backend.files.clone()),
        blobs: Arc::new(backend.blobs.clone()),
        upstream: Arc::new(upstream),
        clock,
        ids: Arc::new(IdGenerator::new()),
        job_policy: config.job_policy(),
        file_policy: config.aws_file_policy(),
        batch_policy: config.batch_policy(),
        model_gate: Arc::new(ModelGate::new(config.batch_policy().model_concurrency)),
    };
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

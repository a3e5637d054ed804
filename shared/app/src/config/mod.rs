//! `prism.toml`: providers and routing, worker and job limits. Read once at start (from a file,
//! or on Lambda from an SSM parameter); every value has a default, so no file at all routes every
//! model to OpenAI. This module holds the file as a whole, its reading and what each service's
//! policy takes from it; each section's keys and defaults are in a submodule of their own.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use prism_core::batches::service::BatchPolicy;
use prism_core::deps::{Policies, WorkPolicy};
use prism_core::files::service::FilePolicy;
use prism_core::jobs::service::JobPolicy;
use prism_core::pricing::PriceTable;
use prism_core::webhooks::WebhookPolicy;
use prism_upstream::{ProviderConfig, SecretKey, UpstreamOptions};
use serde::Deserialize;

use crate::prices::PriceSection;

mod batches;
mod files;
mod http;
mod models;
mod providers;
mod storage;
mod telemetry;
mod webhooks;
mod workers;

pub use batches::BatchSection;
pub use files::{AWS_REDIRECT_DOWNLOADS_ABOVE, FileSection};
pub use http::{DEFAULT_MAX_BODY_BYTES, HttpSection};
pub use models::ModelSection;
pub use providers::ProviderSection;
pub use storage::StorageSection;
pub use telemetry::{MetricsSection, TraceSection};
pub use webhooks::WebhookSection;
pub use workers::{JobSection, WorkerSection};

use providers::default_providers;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_providers")]
    pub providers: Vec<ProviderSection>,
    #[serde(default)]
    pub workers: WorkerSection,
    #[serde(default)]
    pub jobs: JobSection,
    #[serde(default)]
    pub http: HttpSection,
    #[serde(default)]
    pub files: FileSection,
    #[serde(default)]
    pub batches: BatchSection,
    #[serde(default)]
    pub storage: StorageSection,
    #[serde(default)]
    pub webhooks: WebhookSection,
    /// `[[prices]]`: what finished work cost, per model (none: no cost is shown).
    #[serde(default)]
    pub prices: Vec<PriceSection>,
    #[serde(default)]
    pub metrics: MetricsSection,
    #[serde(default)]
    pub traces: TraceSection,
    #[serde(default)]
    pub models: ModelSection,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            providers: default_providers(),
            workers: WorkerSection::default(),
            jobs: JobSection::default(),
            http: HttpSection::default(),
            files: FileSection::default(),
            batches: BatchSection::default(),
            webhooks: WebhookSection::default(),
            prices: Vec::new(),
            storage: StorageSection::default(),
            metrics: MetricsSection::default(),
            traces: TraceSection::default(),
            models: ModelSection::default(),
        }
    }
}

impl Config {
    /// Reads `path` if given; otherwise the defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&text, &shown)
    }

    /// Parses configuration text; `origin` names where it came from in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_owned(),
            source: Box::new(source),
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(ConfigError::Invalid(
                "at least one [[providers]] entry is needed".into(),
            ));
        }
        self.price_table()?;
        if self.workers.concurrency == 0 || self.workers.max_attempts == 0 {
            return Err(ConfigError::Invalid(
                "workers.concurrency and workers.max_attempts must be at least 1".into(),
            ));
        }
        if self.workers.max_receives == 0 {
            // Every delivery would go straight to the dead-letter path: no work would ever run.
            return Err(ConfigError::Invalid(
                "workers.max_receives must be at least 1: with 0 every message is dead-lettered \
                 on its first delivery, so no job, batch chunk or webhook would ever run"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Every service's knobs on the embedded backend.
    pub fn embedded_policies(&self) -> Policies {
        Policies {
            work: self.work_policy(),
            jobs: self.job_policy(),
            files: self.file_policy(),
            batches: self.batch_policy(),
            webhooks: self.webhook_policy(),
            prices: self.price_table().unwrap_or_default(),
        }
    }

    /// Every service's knobs on the AWS backend (its own Files API limits).
    pub fn aws_policies(&self) -> Policies {
        let jobs = self.job_policy();
        Policies {
            work: self.work_policy(),
            // EventBridge Scheduler's cron has no seconds field.
            jobs: JobPolicy {
                recurring_min_interval: jobs.recurring_min_interval.max(Duration::from_secs(60)),
                ..jobs
            },
            files: self.aws_file_policy(),
            batches: self.batch_policy(),
            webhooks: self.webhook_policy(),
            prices: self.price_table().unwrap_or_default(),
        }
    }

    /// The `[[prices]]` table; its errors were reported when the file was read.
    pub fn price_table(&self) -> Result<PriceTable, ConfigError> {
        crate::prices::price_table(&self.prices)
    }

    pub fn webhook_policy(&self) -> WebhookPolicy {
        WebhookPolicy {
            allow_private_targets: self.webhooks.allow_private_targets,
            retry_base: self.webhooks.retry_base,
        }
    }

    /// What every stage shares: `[workers]`' attempt and delivery bounds, and when the
    /// reconciler takes untouched work back (`[jobs] stranded_after`).
    pub fn work_policy(&self) -> WorkPolicy {
        WorkPolicy {
            upstream_timeout: self.workers.upstream_timeout,
            max_attempts: self.workers.max_attempts,
            max_receives: self.workers.max_receives,
            stranded_after: self.jobs.stranded_after,
        }
    }

    pub fn job_policy(&self) -> JobPolicy {
        JobPolicy {
            retention: self.jobs.retention,
            idempotency_ttl: self.jobs.idempotency_ttl,
            max_inline_retry_wait: self.workers.max_inline_retry_wait,
            cancel_poll: self.workers.cancel_poll,
            schedule_horizon: self.jobs.schedule_horizon,
            lease_margin: self.workers.lease_margin,
            recurring_min_interval: self.jobs.recurring_min_interval,
            max_recurring_per_tenant: self.jobs.max_recurring_per_tenant,
        }
    }

    pub fn batch_policy(&self) -> BatchPolicy {
        let b = &self.batches;
        BatchPolicy {
            completion_window: b.completion_window,
            lines_per_chunk: b.lines_per_chunk.max(1),
            line_concurrency: b.line_concurrency.max(1),
            model_concurrency: b.model_concurrency.max(1),
            checkpoint_every: b.checkpoint_every,
            checkpoint_lines: b.checkpoint_lines.max(1),
            lease: b.lease,
            max_active_per_tenant: b.max_active_per_tenant,
        }
    }

    /// The Files API's limits on the embedded backend.
    pub fn file_policy(&self) -> FilePolicy {
        FilePolicy {
            max_upload_bytes: self.files.max_upload_bytes,
            upload_limit_reason: None,
            max_file_bytes: self.files.max_upload_bytes,
            max_part_bytes: prism_core::uploads::MAX_PART_BYTES,
            upload_ttl: self.files.upload_ttl,
            redirect_downloads_above: self.files.redirect_downloads_above,
            presigned_url_ttl: self.files.presigned_url_ttl,
        }
    }

    /// The Files API's limits on the AWS backend: requests arrive through Lambda, so an upload
    /// is capped by its payload limit, and large downloads go straight to S3.
    pub fn aws_file_policy(&self) -> FilePolicy {
        let cap = self.http.max_body_bytes as u64;
        FilePolicy {
            max_upload_bytes: self.files.max_upload_bytes.min(cap),
            upload_limit_reason: Some(format!(
                "the AWS backend receives requests through AWS Lambda, whose request payload limit \
                 is {cap} bytes (less the base64 encoding of a binary body)."
            )),
            max_file_bytes: self.files.max_upload_bytes,
            max_part_bytes: cap,
            upload_ttl: self.files.upload_ttl,
            redirect_downloads_above: Some(
                self.files
                    .redirect_downloads_above
                    .unwrap_or(AWS_REDIRECT_DOWNLOADS_ABOVE),
            ),
            presigned_url_ttl: self.files.presigned_url_ttl,
        }
    }

    /// Resolves each provider's key: from `secrets` (fetched by the AWS backend, keyed by
    /// `api_key_secret`), else from its environment variable. A provider with neither is keyless
    /// (a local model server needs none).
    pub fn providers(
        &self,
        env: impl Fn(&str) -> Option<String>,
        secrets: &HashMap<String, String>,
    ) -> Vec<ProviderConfig> {
        self.providers
            .iter()
            .map(|p| ProviderConfig {
                name: p.name.clone(),
                base_url: p.base_url.clone(),
                api_key: p
                    .api_key_secret
                    .as_ref()
                    .and_then(|id| secrets.get(id).cloned())
                    .or_else(|| p.api_key_env.as_deref().and_then(&env))
                    .filter(|k| !k.is_empty())
                    .map(SecretKey::new),
                models: p.models.clone(),
                batch: p.batch,
                flex_fallback: p.flex_fallback,
            })
            .collect()
    }

    /// The upstream client's options from `[models]`; the rest keep their defaults.
    pub fn upstream_options(&self) -> UpstreamOptions {
        UpstreamOptions {
            models_ttl: self.models.cache_ttl,
            ..UpstreamOptions::default()
        }
    }

    /// The Secrets Manager secrets the providers name.
    pub fn provider_secrets(&self) -> Vec<&str> {
        self.providers
            .iter()
            .filter_map(|p| p.api_key_secret.as_deref())
            .collect()
    }
}

#[cfg(test)]
mod tests;

//! `prism.toml`: providers and routing, worker and job limits. Read once at start (from a file,
//! or on Lambda from an SSM parameter); every value has a default, so no file at all routes every
//! model to OpenAI.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use prism_core::batches::modes::{BatchMode, FlexFallback};
use prism_core::batches::service::BatchPolicy;
use prism_core::deps::{Policies, WorkPolicy};
use prism_core::files::service::FilePolicy;
use prism_core::jobs::service::JobPolicy;
use prism_core::pricing::PriceTable;
use prism_core::webhooks::WebhookPolicy;
use prism_upstream::{ProviderConfig, SecretKey, UpstreamOptions};
use serde::Deserialize;

use crate::prices::PriceSection;

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

/// `[models]`: the model list (`GET /v1/models`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// How long a provider's own model list (its `GET /models`, asked for providers with a glob
    /// among their patterns) is reused before it is fetched again.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            cache_ttl: UpstreamOptions::default().models_ttl,
        }
    }
}

/// `[metrics]`: `prism serve`'s Prometheus endpoint. Off unless `listen` is set: it answers
/// anyone who reaches it, so it gets its own address (loopback, or a network only the scraper
/// reaches), never the API's listener nor its keys. The Lambda functions write CloudWatch
/// Embedded Metric Format lines instead and ignore this section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// Where `GET /metrics` is served, e.g. `127.0.0.1:9464`.
    pub listen: Option<std::net::SocketAddr>,
}

/// `[traces]`: optional OpenTelemetry export over OTLP (http/protobuf). Off unless
/// `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TraceSection {
    /// The collector's traces URL, e.g. `http://127.0.0.1:4318/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
}

impl Default for TraceSection {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "prism".into(),
        }
    }
}

/// `[webhooks]`: delivery of events for finished work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSection {
    /// Lets endpoints target loopback, private and link-local addresses over plain http (tests,
    /// a receiver on the same box). Off by default: https to public addresses only.
    pub allow_private_targets: bool,
    /// The first retry's base wait; each later one doubles it, up to an hour.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
}

impl Default for WebhookSection {
    fn default() -> Self {
        let policy = WebhookPolicy::default();
        Self {
            allow_private_targets: policy.allow_private_targets,
            retry_base: policy.retry_base,
        }
    }
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

/// The embedded store's group commit: how many writes, and how many bytes of them (request
/// bodies, results), one SQLite transaction takes at most, and for how long (microseconds) it
/// keeps taking writes once begun.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub group_max_writes: usize,
    pub group_max_bytes: usize,
    pub group_max_time_us: u64,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            group_max_writes: 1024,
            group_max_bytes: 16 * 1024 * 1024,
            group_max_time_us: 2_000,
        }
    }
}

/// The Files API's limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FileSection {
    /// Uploads above this many bytes are answered 413 (the AWS backend also caps them at
    /// `http.max_body_bytes`, Lambda's request payload limit).
    pub max_upload_bytes: u64,
    /// Downloads above this many bytes are answered with a redirect to a pre-signed S3 URL on
    /// the AWS backend (default: 6 MB, what a Lambda response carries unthrottled).
    pub redirect_downloads_above: Option<u64>,
    #[serde(with = "humantime_serde")]
    pub presigned_url_ttl: Duration,
    /// How long an upload (the Uploads API) takes parts and its complete: one hour, as on
    /// OpenAI (shorter in tests).
    #[serde(with = "humantime_serde")]
    pub upload_ttl: Duration,
}

impl Default for FileSection {
    fn default() -> Self {
        let policy = FilePolicy::default();
        Self {
            max_upload_bytes: policy.max_upload_bytes,
            redirect_downloads_above: None,
            presigned_url_ttl: policy.presigned_url_ttl,
            upload_ttl: policy.upload_ttl,
        }
    }
}

/// How batches run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// From creation to expiry. The API only takes `completion_window: "24h"`; this is how long
    /// that is here (shorter in tests).
    #[serde(with = "humantime_serde")]
    pub completion_window: Duration,
    pub lines_per_chunk: usize,
    /// Lines of one chunk in flight at once.
    pub line_concurrency: usize,
    /// Batch lines toward one model in flight at once, per process.
    pub model_concurrency: usize,
    /// Finished lines are committed within this long of arriving (default 250 ms), so a kill
    /// repeats at most the calls in flight; at most `checkpoint_lines` go in one commit.
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
    pub checkpoint_lines: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub max_active_per_tenant: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        let p = BatchPolicy::default();
        Self {
            completion_window: p.completion_window,
            lines_per_chunk: p.lines_per_chunk,
            line_concurrency: p.line_concurrency,
            model_concurrency: p.model_concurrency,
            checkpoint_every: p.checkpoint_every,
            checkpoint_lines: p.checkpoint_lines,
            lease: p.lease,
            max_active_per_tenant: p.max_active_per_tenant,
        }
    }
}

/// Lambda's response size that streams unthrottled; larger downloads are redirected to S3.
pub const AWS_REDIRECT_DOWNLOADS_ABOVE: u64 = 6 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderSection {
    pub name: String,
    pub base_url: String,
    /// The environment variable holding the provider's key; the key itself never appears here.
    pub api_key_env: Option<String>,
    /// A Secrets Manager secret (name or ARN) holding the key; read by the AWS backend.
    pub api_key_secret: Option<String>,
    #[serde(default = "match_everything")]
    pub models: Vec<String>,
    /// How this provider runs batch lines: `gateway` (default), `native` or `flex`.
    #[serde(default, deserialize_with = "batch_mode")]
    pub batch: BatchMode,
    /// A flex line refused with "resource unavailable": `retry` (default) or `standard`.
    #[serde(default, deserialize_with = "flex_fallback")]
    pub flex_fallback: FlexFallback,
}

fn match_everything() -> Vec<String> {
    vec!["*".to_owned()]
}

/// Named by core's one list of modes, so config accepts exactly the modes there are.
fn batch_mode<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BatchMode, D::Error> {
    let name = String::deserialize(d)?;
    BatchMode::parse(&name).ok_or_else(|| {
        let names: Vec<&str> = BatchMode::ALL.iter().map(|m| m.as_str()).collect();
        serde::de::Error::custom(format!(
            "unknown batch mode '{name}', expected one of {}",
            names.join(", ")
        ))
    })
}

fn flex_fallback<'de, D: serde::Deserializer<'de>>(d: D) -> Result<FlexFallback, D::Error> {
    let name = String::deserialize(d)?;
    FlexFallback::parse(&name).ok_or_else(|| {
        let names: Vec<&str> = FlexFallback::ALL.iter().map(|f| f.as_str()).collect();
        serde::de::Error::custom(format!(
            "unknown flex_fallback '{name}', expected one of {}",
            names.join(", ")
        ))
    })
}

fn default_providers() -> Vec<ProviderSection> {
    vec![ProviderSection {
        name: "openai".to_owned(),
        base_url: "https://api.openai.com/v1".to_owned(),
        api_key_env: Some("OPENAI_API_KEY".to_owned()),
        api_key_secret: None,
        models: match_everything(),
        batch: BatchMode::Gateway,
        flex_fallback: FlexFallback::Retry,
    }]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Work items (jobs, batch-stage messages) run at once by each of this process's consumers.
    pub concurrency: usize,
    /// Upstream attempts per job, the first included.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Retry waits up to this long are slept through; longer ones release the job for later.
    #[serde(with = "humantime_serde")]
    pub max_inline_retry_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub cancel_poll: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub reconcile_every: Duration,
    /// Deliveries of one message (any stage) before it is dead-lettered: a job fails with
    /// `processing_failed`, a batch stage settles as its dead letter does.
    pub max_receives: u32,
    /// How far a job's lease outlives the upstream attempt it covers.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// `--backend aws`: how long a received message stays hidden before the consumer extends it.
    #[serde(with = "humantime_serde")]
    pub visibility: Duration,
}

impl Default for WorkerSection {
    fn default() -> Self {
        let policy = JobPolicy::default();
        let work = WorkPolicy::default();
        Self {
            concurrency: 64,
            max_attempts: work.max_attempts,
            upstream_timeout: work.upstream_timeout,
            max_inline_retry_wait: policy.max_inline_retry_wait,
            cancel_poll: policy.cancel_poll,
            shutdown_grace: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(10),
            max_receives: work.max_receives,
            lease_margin: policy.lease_margin,
            visibility: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSection {
    /// How long a finished job stays readable, from its completion.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// A `pending` job untouched this long is triggered again by the reconciler.
    #[serde(with = "humantime_serde")]
    pub stranded_after: Duration,
    /// How far ahead `scheduled_at` may be.
    #[serde(with = "humantime_serde")]
    pub schedule_horizon: Duration,
    /// The shortest interval between a recurring schedule's fire times. Under a minute allows a
    /// 6-field cron with seconds, on embedded only (tests); the AWS backend keeps 60 s.
    #[serde(with = "humantime_serde")]
    pub recurring_min_interval: Duration,
    /// Active and paused recurring schedules per tenant.
    pub max_recurring_per_tenant: usize,
}

impl Default for JobSection {
    fn default() -> Self {
        let policy = JobPolicy::default();
        Self {
            retention: policy.retention,
            idempotency_ttl: policy.idempotency_ttl,
            stranded_after: WorkPolicy::default().stranded_after,
            schedule_horizon: policy.schedule_horizon,
            recurring_min_interval: policy.recurring_min_interval,
            max_recurring_per_tenant: policy.max_recurring_per_tenant,
        }
    }
}

/// Lambda's request payload limit, so both backends refuse the same bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Request bodies above this many bytes are answered 413.
    pub max_body_bytes: usize,
    /// A non-streamed synchronous completion is answered 504 after this long (keep it under any
    /// gateway timeout in front); unset means no limit.
    #[serde(with = "humantime_serde")]
    pub sync_deadline: Option<Duration>,
    /// Request-body bytes the process holds in memory at once; past it, 503 with `retry-after`.
    pub max_inflight_body_bytes: usize,
    /// `prism serve`: a connection that has not sent a whole request head (request line and
    /// headers) this long after it was opened or went idle is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// `prism serve`: a request body that sends nothing for this long is answered 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// `prism serve`: open connections at most; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sync_deadline: None,
            // prism_http::DEFAULT_MAX_INFLIGHT_BODY_BYTES (this crate does not depend on it).
            max_inflight_body_bytes: 192 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
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
mod tests {
    use super::*;

    #[test]
    fn config_file_overrides_defaults_and_reads_durations() {
        let config: Config = toml::from_str(
            r#"
            [[providers]]
            name = "mock"
            base_url = "http://127.0.0.1:9/v1"
            models = ["mock-*"]
            [workers]
            concurrency = 8
            upstream_timeout = "2s"
            [jobs]
            retention = "7d"
            "#,
        )
        .unwrap();
        assert_eq!(config.workers.concurrency, 8);
        assert_eq!(config.workers.upstream_timeout, Duration::from_secs(2));
        assert_eq!(config.jobs.retention, Duration::from_secs(7 * 86400));
        assert_eq!(config.workers.max_attempts, 5);
        assert_eq!(config.providers[0].api_key_env, None);
    }

    #[test]
    fn providers_choose_a_batch_mode_and_a_flex_fallback() {
        let config = Config::parse(
            r#"
            [[providers]]
            name = "native"
            base_url = "http://127.0.0.1:9/v1"
            models = ["gpt-*"]
            batch = "native"
            [[providers]]
            name = "flex"
            base_url = "http://127.0.0.1:9/v1"
            batch = "flex"
            flex_fallback = "standard"
            "#,
            "test",
        )
        .unwrap();
        let providers = config.providers(|_| None, &HashMap::new());
        assert_eq!(providers[0].batch, BatchMode::Native);
        assert_eq!(providers[0].flex_fallback, FlexFallback::Retry);
        assert_eq!(providers[1].batch, BatchMode::Flex);
        assert_eq!(providers[1].flex_fallback, FlexFallback::Standard);
        assert_eq!(Config::default().providers[0].batch, BatchMode::Gateway);
    }

    #[test]
    fn an_unknown_batch_mode_is_refused_with_the_modes_there_are() {
        let error = Config::parse(
            "[[providers]]\nname = \"p\"\nbase_url = \"http://x/v1\"\nbatch = \"cheap\"\n",
            "test",
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("gateway, native, flex"), "{error}");
    }

    #[test]
    fn storage_section_bounds_the_group_commit_and_keeps_the_other_default() {
        let config = Config::parse("[storage]\ngroup_max_writes = 64\n", "test").unwrap();
        assert_eq!(config.storage.group_max_writes, 64);
        assert_eq!(config.storage.group_max_bytes, 16 * 1024 * 1024);
        assert_eq!(config.storage.group_max_time_us, 2_000);
        assert!(Config::parse("[storage]\ngroup_size = 1\n", "test").is_err());
    }

    #[test]
    fn no_config_routes_everything_to_openai_with_its_env_key() {
        let providers = Config::default().providers(
            |name| (name == "OPENAI_API_KEY").then(|| "sk-test".to_owned()),
            &HashMap::new(),
        );
        assert_eq!(providers[0].base_url, "https://api.openai.com/v1");
        assert_eq!(providers[0].models, vec!["*"]);
        assert!(providers[0].api_key.is_some());
    }

    #[test]
    fn provider_key_from_a_secret_wins_over_the_environment() {
        let config = Config::parse(
            r#"
            [[providers]]
            name = "openai"
            base_url = "https://api.openai.com/v1"
            api_key_env = "OPENAI_API_KEY"
            api_key_secret = "prism/openai"
            "#,
            "test",
        )
        .unwrap();
        assert_eq!(config.provider_secrets(), vec!["prism/openai"]);
        let secrets = HashMap::from([("prism/openai".to_owned(), "sk-secret".to_owned())]);
        let providers = config.providers(|_| Some("sk-env".to_owned()), &secrets);
        assert_eq!(providers[0].api_key.as_ref().unwrap().expose(), "sk-secret");
        let providers = config.providers(|_| Some("sk-env".to_owned()), &HashMap::new());
        assert_eq!(providers[0].api_key.as_ref().unwrap().expose(), "sk-env");
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<Config>("[workers]\nconcurency = 3").is_err());
    }

    #[test]
    fn the_model_list_cache_ttl_comes_from_the_models_section() {
        assert_eq!(
            Config::default().upstream_options().models_ttl,
            Duration::from_secs(300)
        );
        let config = Config::parse("[models]\ncache_ttl = \"30s\"\n", "test").unwrap();
        assert_eq!(
            config.upstream_options().models_ttl,
            Duration::from_secs(30)
        );
        assert!(Config::parse("[models]\nttl = \"30s\"\n", "test").is_err());
    }
}

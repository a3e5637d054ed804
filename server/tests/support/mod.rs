//! Test support for the end-to-end suites: a `prism serve` child process on a temporary data
//! directory, the mock upstream in-process, and helpers that read as actions. This module holds
//! the test's environment ([`Env`]), its setup and start, and the helpers every suite uses; the
//! submodules hold the backends, keys, the server process, requests, batches, the CLI and
//! recurring schedules.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

mod backend;
mod batches;
pub mod cli;
mod keys;
pub mod raw;
pub mod receiver;
pub mod recurring;
mod requests;
mod server;

use backend::backend_for_test;
// The helpers at the paths the suites name them by (`support::create_key_on`); each test binary
// uses some of them.
#[allow(unused_imports)]
pub use backend::{AFTER_A_CRASH, Backend};
#[allow(unused_imports)]
pub use batches::chat_batch_input;
#[allow(unused_imports)]
pub use keys::{create_key, create_key_on, revoke_key_on};
#[allow(unused_imports)]
pub use requests::{Parts, job_path};
#[allow(unused_imports)]
pub use server::{Process, Server, free_port};

use prism_testkit::{MockUpstream, spawn_mock_upstream};
use serde_json::{Value, json};
use tempfile::TempDir;

pub const PRISM: &str = env!("CARGO_BIN_EXE_prism");

pub struct Env {
    pub mock: MockUpstream,
    pub dir: TempDir,
    pub config: PathBuf,
    pub server: Option<Server>,
    /// Keys of tenants `alpha` and `beta`.
    pub alpha: String,
    pub beta: String,
    pub http: reqwest::Client,
    pub backend: Backend,
    /// See [`Setup::aws_endpoint`].
    pub aws_endpoint: Option<String>,
    /// More environment for `prism serve` (or the Lambda functions) from the next start on
    /// (test hooks).
    pub extra_env: Vec<(String, String)>,
}

/// Everything the suites usually want, with a fast upstream timeout; `extra` is appended to the
/// config file (extra `[workers]` keys go in `workers`).
pub struct Setup<'a> {
    pub workers: &'a str,
    pub jobs: &'a str,
    pub http: &'a str,
    pub files: &'a str,
    pub batches: &'a str,
    pub models: &'a str,
    /// The `[webhooks]` section.
    pub webhooks: &'a str,
    /// AWS backends: where `prism serve` sends its AWS calls instead of `AWS_ENDPOINT_URL` (a
    /// fault proxy in front of the emulator).
    pub aws_endpoint: Option<&'a str>,
    /// Appended as is: `[[prices]]` tables.
    pub prices: &'a str,
    /// Whole sections appended to the config file as they are (`[metrics]`, `[traces]`).
    pub extra: &'a str,
    /// Environment for `prism serve`, or for every Lambda function, from the first start on.
    pub env: &'a [(&'a str, &'a str)],
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Self {
            workers: "",
            jobs: "",
            http: "",
            files: "",
            batches: "",
            models: r#"["*"]"#,
            webhooks: "",
            aws_endpoint: None,
            prices: "",
            extra: "",
            env: &[],
        }
    }
}

pub async fn start(setup: Setup<'_>) -> Env {
    let mock = spawn_mock_upstream("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prism.toml");
    // Defaults the suites rely on, unless the test sets the key itself.
    let defaults: String = [
        ("upstream_timeout", "\"3s\""),
        ("shutdown_grace", "\"5s\""),
        // Short enough that work of a killed process is picked up within seconds on SQS too.
        ("lease_margin", "\"2s\""),
        ("visibility", "\"4s\""),
        ("reconcile_every", "\"2s\""),
    ]
    .iter()
    .filter(|(key, _)| !setup.workers.contains(key))
    .map(|(key, value)| format!("{key} = {value}\n"))
    .collect();
    std::fs::write(
        &config,
        format!(
            "[[providers]]\nname = \"mock\"\nbase_url = \"{}\"\nmodels = {}\n\n\
             [workers]\n{defaults}{}\n\n[jobs]\n{}\n\n[http]\n{}\n\n[files]\n{}\n\n[batches]\n{}\n\n\
             [webhooks]\n{}\n\n{}\n\n{}\n",
            mock.base_url(),
            setup.models,
            setup.workers,
            setup.jobs,
            setup.http,
            setup.files,
            setup.batches,
            setup.webhooks,
            setup.prices,
            setup.extra
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let backend = backend_for_test(&config).await;
    let alpha = create_key_on(&backend, &data, "alpha").await;
    let beta = create_key_on(&backend, &data, "beta").await;
    let mut env = Env {
        mock,
        dir,
        config,
        server: None,
        alpha,
        beta,
        http: reqwest::Client::new(),
        backend,
        aws_endpoint: setup.aws_endpoint.map(str::to_owned),
        extra_env: setup
            .env
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
    };
    env.start_server().await;
    env
}

/// An RFC 3339 time `offset` from now (negative: in the past), in UTC.
pub fn rfc3339_in(offset_ms: i64) -> String {
    use prism_core::Clock;
    let now = prism_core::SystemClock.now();
    prism_core::clock::format_rfc3339(prism_core::Timestamp(now.millis() + offset_ms))
}

pub fn chat_body(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// Waits until `check` holds, polling; fails with `what` after `within`.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

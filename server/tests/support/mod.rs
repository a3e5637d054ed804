//! Test support for the end-to-end suites: a `prism serve` child process on a temporary data
//! directory, the mock upstream in-process, and helpers that read as actions.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod raw;
pub mod receiver;

use prism_testkit::{MockUpstream, spawn_mock_upstream};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

pub const PRISM: &str = env!("CARGO_BIN_EXE_prism");

/// What serves the suites: `prism serve` on embedded storage; with `PRISM_TEST_BACKEND=aws`,
/// `prism serve --backend aws` against DynamoDB, SQS and S3 on the emulator named by
/// `AWS_ENDPOINT_URL` (scripts/test.sh starts it); with `PRISM_TEST_BACKEND=lambda`, the eight
/// Lambda binaries under cargo-lambda's runtime emulator over the same emulator, with the local
/// stand-ins for event source mappings and schedules (`prism-lambda-local`).
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    Aws(Box<prism_aws::AwsSettings>),
    Lambda(Box<prism_aws::ProvisionedStack>),
}

static NEXT_PREFIX: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Visibility timeout of the emulator's queues: short, so a crashed consumer's messages come
/// back within a test.
const TEST_VISIBILITY_SECONDS: u32 = 30;

/// How long work cut off by a kill -9 may take to come back and finish on any backend: the
/// emulator's queues redeliver it only after their visibility timeout, plus time to run it on a
/// loaded machine.
pub const AFTER_A_CRASH: std::time::Duration =
    std::time::Duration::from_secs(TEST_VISIBILITY_SECONDS as u64 + 30);

fn unique_prefix(kind: &str) -> String {
    let n = NEXT_PREFIX.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{kind}-{}-{n}", std::process::id())
}

async fn backend_for_test(config: &Path) -> Backend {
    let needs_emulator = |backend: &str| {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "PRISM_TEST_BACKEND={backend} needs AWS_ENDPOINT_URL: run scripts/test.sh"
        );
    };
    match std::env::var("PRISM_TEST_BACKEND").as_deref() {
        Ok("aws") => {
            needs_emulator("aws");
            let prefix = unique_prefix("e2e");
            Backend::Aws(Box::new(
                prism_aws::provision(&prefix, TEST_VISIBILITY_SECONDS)
                    .await
                    .unwrap(),
            ))
        }
        Ok("lambda") => {
            needs_emulator("lambda");
            let options = prism_aws::ProvisionOptions {
                visibility_override: Some(TEST_VISIBILITY_SECONDS),
                config_toml: Some(std::fs::read_to_string(config).unwrap()),
            };
            let stack = prism_aws::provision_stack(&unique_prefix("fn"), &options)
                .await
                .unwrap();
            Backend::Lambda(Box::new(stack))
        }
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("unknown PRISM_TEST_BACKEND {other:?}"),
    }
}

impl Backend {
    /// Environment for every `prism` command of this test.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Embedded => vec![("PRISM_BACKEND", "embedded".into())],
            Backend::Aws(s) => aws_env(s),
            Backend::Lambda(stack) => aws_env(&stack.settings),
        }
    }

    /// Either AWS backend: the same storage, limits and emulator.
    pub fn is_aws(&self) -> bool {
        matches!(self, Backend::Aws(_) | Backend::Lambda(_))
    }

    pub fn is_lambda(&self) -> bool {
        matches!(self, Backend::Lambda(_))
    }
}

fn aws_env(settings: &prism_aws::AwsSettings) -> Vec<(&'static str, String)> {
    let mut env = settings.to_env();
    env.push(("PRISM_BACKEND", "aws".into()));
    env
}

/// Multipart parts: `(name, filename, bytes)`; the filename only matters for `file`.
pub type Parts<'a> = &'a [(&'a str, &'a str, &'a [u8])];

/// `PRISM_LOG` of the tests' `prism serve`: info, the batch stages' chunk claims, commits and
/// finalizing at debug, so a batch that hangs can be read back, and the upload parts
/// acknowledged. Never prompts or keys.
const PRISM_TEST_LOG: &str = "info,prism_core::batches=debug,prism_core::uploads=debug";

/// `RUST_LOG` of the tests' Lambda functions: the template's info, and the upload parts each
/// api process acknowledged, so a part a complete cannot find is traced to its write.
const LAMBDA_TEST_LOG: &str = "info,prism_core::uploads=debug";

/// How much of prism's log a failing test prints.
const LOG_TAIL_LINES: usize = 400;

impl Drop for Env {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(log) = std::fs::read_to_string(self.prism_log()) else {
            return;
        };
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        eprintln!(
            "--- prism serve's log, last {} of {} lines ({}) ---\n{}\n--- end of prism's log ---",
            tail.len(),
            lines.len(),
            self.prism_log().display(),
            tail.join("\n")
        );
    }
}

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

pub struct Server {
    pub process: Process,
    pub base: String,
}

/// What answers at `base`.
pub enum Process {
    Prism(Child),
    Lambda(prism_lambda_local::LocalFunctions),
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

pub async fn create_key(data: &Path, tenant: &str) -> String {
    create_key_on(&Backend::Embedded, data, tenant).await
}

pub async fn create_key_on(backend: &Backend, data: &Path, tenant: &str) -> String {
    let out = Command::new(PRISM)
        .args(["keys", "create", "--tenant", tenant, "--data-dir"])
        .arg(data)
        .envs(backend.env())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        key.starts_with("sk-prism-"),
        "unexpected key output {key:?}"
    );
    key
}

/// `prism keys revoke` for `secret`, by the display prefix `keys list` shows.
pub async fn revoke_key_on(backend: &Backend, data: &Path, secret: &str) {
    let prefix: String = secret.chars().take("sk-prism-".len() + 8).collect();
    let out = Command::new(PRISM)
        .args(["keys", "revoke", &prefix, "--data-dir"])
        .arg(data)
        .envs(backend.env())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keys revoke failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The Lambda functions of `stack`, built next to `prism`, with the test's reconcile period
/// for the reconciler's rule.
async fn start_lambda_functions(
    stack: &prism_aws::ProvisionedStack,
    logs: &Path,
    env: &[(String, String)],
) -> prism_lambda_local::LocalFunctions {
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let options = prism_lambda_local::RunOptions {
        cargo_lambda: std::env::var_os("CARGO_LAMBDA")
            .map_or_else(|| PathBuf::from("cargo-lambda"), PathBuf::from),
        binary_dir: Path::new(PRISM).parent().unwrap().to_path_buf(),
        rule_period: Some(Duration::from_secs(2)),
        log_dir: Some(logs.to_path_buf()),
        extra_env: prism_lambda_local::emulator_env(|name| std::env::var(name).ok())
            .into_iter()
            .chain([("RUST_LOG".to_owned(), LAMBDA_TEST_LOG.to_owned())])
            .chain(env.iter().cloned())
            .collect(),
        ..prism_lambda_local::RunOptions::for_workspace(workspace)
    };
    prism_lambda_local::LocalFunctions::start(stack, &options)
        .await
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Env {
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn base(&self) -> &str {
        &self.server.as_ref().expect("server running").base
    }

    pub async fn start_server(&mut self) {
        if let Backend::Lambda(stack) = &self.backend {
            // The functions read the configuration from the stack's parameter, not the file: a
            // test that edited the file between a kill and this start changes it there, as an
            // operator would.
            stack
                .put_config(&std::fs::read_to_string(&self.config).unwrap())
                .await
                .unwrap();
            let functions =
                start_lambda_functions(stack, &self.dir.path().join("logs"), &self.extra_env).await;
            let base = functions.api_url();
            wait_until_healthy(&self.http, &base).await;
            self.server = Some(Server {
                process: Process::Lambda(functions),
                base,
            });
            return;
        }
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.prism_log())
            .unwrap();
        let mut command = Command::new(PRISM);
        if let Some(endpoint) = &self.aws_endpoint {
            command.env("AWS_ENDPOINT_URL", endpoint);
        }
        let child = command
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(self.data_dir())
            .arg("--config")
            .arg(&self.config)
            .env("PRISM_LOG", PRISM_TEST_LOG)
            .envs(self.backend.env())
            .envs(self.extra_env.iter().cloned())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        wait_until_healthy(&self.http, &base).await;
        self.server = Some(Server {
            process: Process::Prism(child),
            base,
        });
    }

    /// `prism serve`'s log (stdout and stderr of every start, in the test's temp dir), printed
    /// when the test fails.
    pub fn prism_log(&self) -> PathBuf {
        self.dir.path().join("prism.log")
    }

    /// The running `prism serve`'s process id (embedded and `--backend aws`).
    pub fn server_pid(&self) -> Option<u32> {
        match &self.server.as_ref()?.process {
            Process::Prism(child) => child.id(),
            Process::Lambda(_) => None,
        }
    }

    /// SIGKILL: the process dies at whatever instruction it was on.
    /// On Lambda: every function process, poller and timer at once.
    pub async fn kill_server(&mut self) {
        match self.server.take().expect("server running").process {
            Process::Prism(mut child) => {
                child.start_kill().unwrap();
                child.wait().await.unwrap();
            }
            Process::Lambda(functions) => functions.kill().await,
        }
    }

    /// SIGKILLs every process of one Lambda function (a crashed sandbox); Lambda, here the
    /// local stack, starts fresh ones. Returns how many were killed.
    pub fn crash_function(&self, binary: &str) -> usize {
        match &self.server.as_ref().expect("server running").process {
            Process::Lambda(functions) => functions.crash(binary),
            Process::Prism(_) => panic!("only Lambda functions crash one by one"),
        }
    }

    /// SIGTERM, then wait for the process to exit on its own.
    pub async fn stop_server(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = match self.server.take().expect("server running").process {
            Process::Prism(child) => child,
            Process::Lambda(functions) => {
                functions.stop().await;
                return std::process::ExitStatus::default();
            }
        };
        let pid = child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(within, child.wait())
            .await
            .expect("server did not exit after SIGTERM")
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    pub async fn chat(&self, key: &str, body: Value, async_mode: bool) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body);
        if async_mode {
            req = req.header("x-prism-async", "true");
        }
        req.send().await.unwrap()
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/files` with the parts in the given order (`("file", name, bytes)` for the file).
    pub async fn upload(&self, key: &str, parts: Parts<'_>) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, filename, bytes) in parts {
            form = if *name == "file" {
                form.part(
                    name.to_string(),
                    reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(filename.to_string()),
                )
            } else {
                form.text(name.to_string(), String::from_utf8(bytes.to_vec()).unwrap())
            };
        }
        self.http
            .post(self.url("/v1/files"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Uploads `bytes` as a batch input file and returns its id, asserting the 200.
    pub async fn upload_batch_file(&self, key: &str, bytes: &[u8]) -> String {
        let response = self
            .upload(
                key,
                &[("purpose", "", b"batch"), ("file", "input.jsonl", bytes)],
            )
            .await;
        assert_eq!(response.status(), 200);
        let file: Value = response.json().await.unwrap();
        file["id"].as_str().unwrap().to_owned()
    }

    /// Polls a batch until its status is one of `statuses`; fails after `within`.
    pub async fn wait_for_batch(&self, id: &str, statuses: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let batch: Value = self
                .get(&self.alpha, &format!("/v1/batches/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if statuses.iter().any(|s| batch["status"] == *s) {
                return batch;
            }
            assert!(
                Instant::now() < deadline,
                "batch {id} still {} after {within:?}: {batch}",
                batch["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Uploads `input` as tenant alpha's batch file and creates a 24 h chat-completions batch
    /// over it; returns the batch id.
    pub async fn start_batch(&self, input: &str) -> String {
        let file = self.upload_batch_file(&self.alpha, input.as_bytes()).await;
        let response = self
            .post(
                &self.alpha,
                "/v1/batches",
                &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// The output and error lines of a finished batch, asserting that each custom id appears
    /// once across both and that `lines` ids appear in all.
    pub async fn finished_batch_lines(
        &self,
        batch: &Value,
        lines: usize,
    ) -> (Vec<Value>, Vec<Value>) {
        let output = self.file_lines(&batch["output_file_id"]).await;
        let errors = self.file_lines(&batch["error_file_id"]).await;
        let mut seen = std::collections::HashSet::new();
        for line in output.iter().chain(&errors) {
            let custom_id = line["custom_id"].as_str().unwrap().to_owned();
            assert!(seen.insert(custom_id.clone()), "{custom_id} appears twice");
        }
        assert_eq!(seen.len(), lines, "every custom_id appears");
        (output, errors)
    }

    /// The JSON lines of one of tenant alpha's files; none for a `null` file id.
    pub async fn file_lines(&self, file_id: &Value) -> Vec<Value> {
        let Some(id) = file_id.as_str() else {
            return Vec::new();
        };
        let text = self
            .get(&self.alpha, &format!("/v1/files/{id}/content"))
            .await
            .text()
            .await
            .unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Schedules a completion `in_ms` from now and returns its id, asserting the 201.
    pub async fn schedule(&self, key: &str, model: &str, content: &str, in_ms: i64) -> String {
        let body = json!({"scheduled_at": rfc3339_in(in_ms), "request": chat_body(model, content)});
        let response = self.post(key, "/v1/scheduled", &body).await;
        assert_eq!(response.status(), 201);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "pending");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Submits an async job and returns its id, asserting the 202.
    pub async fn submit(&self, key: &str, model: &str, content: &str) -> String {
        let response = self.chat(key, chat_body(model, content), true).await;
        assert_eq!(response.status(), 202);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "pending");
        job["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// The job at its own route: `/v1/scheduled/{id}` for `sched_` ids, `/v1/async/{id}` else.
    pub async fn job(&self, key: &str, id: &str) -> Value {
        let response = self.get(key, &job_path(id)).await;
        assert_eq!(response.status(), 200, "GET job {id}");
        response.json().await.unwrap()
    }

    /// Polls until the job's status is one of `statuses`; fails after `within`.
    pub async fn wait_for(
        &self,
        key: &str,
        id: &str,
        statuses: &[&str],
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(key, id).await;
            if statuses.iter().any(|s| job["status"] == *s) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {} after {within:?}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn job_path(id: &str) -> String {
    if id.starts_with("sched_") {
        format!("/v1/scheduled/{id}")
    } else {
        format!("/v1/async/{id}")
    }
}

/// An RFC 3339 time `offset` from now (negative: in the past), in UTC.
pub fn rfc3339_in(offset_ms: i64) -> String {
    use prism_core::Clock;
    let now = prism_core::SystemClock.now();
    prism_core::clock::format_rfc3339(prism_core::Timestamp(now.millis() + offset_ms))
}

/// A JSONL batch input of `count` chat lines for `model`, custom ids `{prefix}-{i}`.
pub fn chat_batch_input(prefix: &str, model: &str, count: usize) -> String {
    let mut input = String::new();
    for i in 0..count {
        input.push_str(
            &json!({"custom_id": format!("{prefix}-{i}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": chat_body(model, &i.to_string())})
            .to_string(),
        );
        input.push('\n');
    }
    input
}

pub fn chat_body(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

async fn wait_until_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(format!("{base}/health")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "prism did not become healthy at {base}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

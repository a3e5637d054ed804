//! The `prism serve` process the driver owns: its config file, its key, starting it, SIGKILLing
//! it and starting it again on the same data directory (embedded) or the same tables and queues
//! (aws), on the same port so clients keep one URL.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Where Prism keeps its state, and the environment that says so.
pub enum Storage {
    Embedded,
    /// Tables, queues and bucket provisioned on the emulator; `endpoint` is what Prism talks to
    /// (the emulator itself, or the fault proxy in front of it).
    Aws {
        env: Vec<(&'static str, String)>,
        endpoint: Option<String>,
    },
}

impl Storage {
    /// Provisions a fresh stack on the emulator named by `AWS_ENDPOINT_URL`.
    pub async fn provision_aws(prefix: &str, endpoint: Option<String>) -> anyhow::Result<Self> {
        // Short, so a killed consumer's messages come back within the run.
        let settings = prism_aws::provision(prefix, 30)
            .await
            .context("provisioning on the emulator")?;
        let mut env = settings.to_env();
        env.push(("PRISM_BACKEND", "aws".into()));
        Ok(Self::Aws { env, endpoint })
    }

    fn env(&self, for_serve: bool) -> Vec<(&'static str, String)> {
        match self {
            Storage::Embedded => vec![("PRISM_BACKEND", "embedded".into())],
            Storage::Aws { env, endpoint } => {
                let mut env = env.clone();
                if let (true, Some(endpoint)) = (for_serve, endpoint) {
                    env.push(("AWS_ENDPOINT_URL", endpoint.clone()));
                }
                env
            }
        }
    }
}

/// What `prism serve` logs in a run: warnings, plus each job's claim, upstream call and outcome
/// write (with their timings and the job id of the span), which tell a repeated paid call's cause
/// (a kill, a lapsed lease, an attempt timeout). Never prompts or completions: those are not
/// logged at any level.
pub const PRISM_LOG: &str =
    "warn,prism_core::jobs=debug,prism_core::dispatch=debug,prism_upstream=debug";

pub struct Prism {
    pub bin: PathBuf,
    pub data: PathBuf,
    pub config: PathBuf,
    pub port: u16,
    pub storage: Storage,
    pub log: PathBuf,
    /// `PRISM_LOG` for `prism serve` (see [`PRISM_LOG`]).
    pub log_filter: String,
    child: Option<Child>,
    /// The running process's pid, 0 while down; read by the sampler.
    pub pid: Arc<AtomicU32>,
    pub kills: u32,
}

impl Prism {
    pub fn new(bin: PathBuf, work: &Path, port: u16, storage: Storage) -> Self {
        Self {
            bin,
            data: work.join("data"),
            config: work.join("prism.toml"),
            port,
            storage,
            log: work.join("prism.log"),
            log_filter: PRISM_LOG.to_owned(),
            child: None,
            pid: Arc::new(AtomicU32::new(0)),
            kills: 0,
        }
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub async fn create_key(&self, tenant: &str) -> anyhow::Result<String> {
        let out = Command::new(&self.bin)
            .args(["keys", "create", "--tenant", tenant, "--data-dir"])
            .arg(&self.data)
            .envs(self.storage.env(false))
            .output()
            .await?;
        if !out.status.success() {
            bail!("keys create: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    pub async fn start(&mut self, http: &reqwest::Client) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data-dir")
            .arg(&self.data)
            .arg("--config")
            .arg(&self.config)
            .env("PRISM_LOG", &self.log_filter)
            .envs(self.storage.env(true))
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .context("starting prism serve")?;
        self.pid.store(child.id().unwrap_or(0), Ordering::SeqCst);
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let health = http.get(format!("{}/health", self.base())).send().await;
            if health.is_ok_and(|r| r.status() == 200) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "prism exited during start ({status}); see {}",
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!("prism did not become healthy; see {}", self.log.display());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL, then wait for the process to be gone.
    pub async fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.start_kill()?;
            child.wait().await?;
            self.pid.store(0, Ordering::SeqCst);
            self.kills += 1;
            // A marker in the log, so each process's lines are told apart from the next one's.
            use std::io::Write;
            let mut log = std::fs::OpenOptions::new().append(true).open(&self.log)?;
            writeln!(log, "=== prism-chaos: SIGKILL {} ===", self.kills)?;
        }
        Ok(())
    }

    /// SIGTERM at the end of a run, SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(grace, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            self.pid.store(0, Ordering::SeqCst);
        }
    }
}

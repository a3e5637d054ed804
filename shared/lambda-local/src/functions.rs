//! The functions' side of the local stack: cargo-lambda's runtime emulator (`cargo lambda watch
//! --only-lambda-apis`: the invoke API, the function URL and the runtime API) and a supervisor
//! that runs each function binary against it, starting a fresh process when one dies, as Lambda
//! starts a fresh sandbox.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::LocalError;

/// How long the runtime emulator may take to listen.
const CONTROL_PLANE_START: Duration = Duration::from_secs(60);
/// Pause before a dead function's replacement starts, so a binary that cannot start does not spin.
const RESTART_PAUSE: Duration = Duration::from_millis(200);
/// Between SIGTERM and SIGKILL when the stack stops gracefully (Lambda gives 500 ms to 2 s).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// `cargo lambda watch --only-lambda-apis` on a loopback port: it serves invokes and function
/// URLs, and hands each to whichever process of that function polls its runtime API.
pub struct ControlPlane {
    child: Child,
    pub port: u16,
}

impl ControlPlane {
    /// Starts the emulator from the workspace at `workspace` (cargo-lambda reads its manifest)
    /// and waits until it listens. `program` is the `cargo-lambda` executable.
    pub async fn start(
        program: &Path,
        workspace: &Path,
        port: u16,
        log: Stdio,
    ) -> Result<Self, LocalError> {
        let child = Command::new(program)
            .args(["lambda", "watch", "--only-lambda-apis", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .current_dir(workspace)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LocalError::Spawn(program.display().to_string(), e))?;
        let started = Instant::now();
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            if started.elapsed() > CONTROL_PLANE_START {
                return Err(LocalError::NotReady(format!(
                    "cargo lambda watch on port {port}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self { child, port })
    }

    /// The runtime API address a function named `name` polls.
    pub fn runtime_api(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/.rt/{name}", self.port)
    }

    /// Where an invocation of `name` is posted (Lambda's Invoke API path).
    pub fn invoke_url(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{name}/invocations",
            self.port
        )
    }

    /// The function URL of `name`: its HTTP routes hang below this.
    pub fn function_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/lambda-url/{name}", self.port)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// What one function runs with.
#[derive(Debug, Clone)]
pub struct FunctionPlan {
    /// The template's logical id (`AsyncWorkerFunction`).
    pub logical_id: String,
    /// The workspace binary, also its name at the runtime emulator (`async-worker`).
    pub binary: String,
    /// The environment the template gives it, resolved against the provisioned resources, plus
    /// the emulator's endpoint and credentials.
    pub env: Vec<(String, String)>,
    pub memory_mb: u32,
    pub timeout: Duration,
    /// Processes run at once, each taking one invocation at a time as a sandbox does.
    pub instances: usize,
}

/// A process start, for cold-start measurements.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    pub at: Instant,
    pub pid: u32,
}

/// Supervises every process of one function.
pub struct Supervisor {
    plan: FunctionPlan,
    /// Process ids alive now.
    pids: Arc<Mutex<Vec<u32>>>,
    starts: Arc<Mutex<Vec<Start>>>,
    /// Counts deaths, so an invocation in flight learns that its sandbox is gone.
    deaths: watch::Sender<u64>,
    /// Set before a stop that should let the processes exit on SIGTERM.
    graceful: AtomicBool,
}

impl Supervisor {
    pub fn new(plan: FunctionPlan) -> Arc<Self> {
        Arc::new(Self {
            plan,
            pids: Arc::default(),
            starts: Arc::default(),
            deaths: watch::channel(0).0,
            graceful: AtomicBool::new(false),
        })
    }

    pub fn plan(&self) -> &FunctionPlan {
        &self.plan
    }

    /// Runs `instances` processes until `stop`, replacing each one that exits.
    pub fn spawn(
        self: &Arc<Self>,
        binary_dir: &Path,
        runtime_api: String,
        log_dir: Option<PathBuf>,
        stop: CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..self.plan.instances)
            .map(|instance| {
                let this = Arc::clone(self);
                let program = binary_dir.join(&self.plan.binary);
                let runtime_api = runtime_api.clone();
                let log_dir = log_dir.clone();
                let stop = stop.clone();
                tokio::spawn(async move {
                    this.keep_running(instance, &program, &runtime_api, log_dir, stop)
                        .await;
                })
            })
            .collect()
    }

    async fn keep_running(
        &self,
        instance: usize,
        program: &Path,
        runtime_api: &str,
        log_dir: Option<PathBuf>,
        stop: CancellationToken,
    ) {
        while !stop.is_cancelled() {
            let mut child = match self.start(instance, program, runtime_api, log_dir.as_deref()) {
                Ok(child) => child,
                Err(error) => {
                    tracing::error!(binary = %self.plan.binary, %error, "cannot start function");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let pid = child.id().unwrap_or_default();
            lock(&self.pids).push(pid);
            let status = tokio::select! {
                status = child.wait() => Some(status),
                () = stop.cancelled() => None,
            };
            lock(&self.pids).retain(|p| *p != pid);
            match status {
                None => {
                    if self.graceful.load(Ordering::SeqCst) {
                        // As Lambda ends a sandbox: SIGTERM, then SIGKILL after a grace period.
                        signal(pid, "-TERM");
                        let _ = tokio::time::timeout(SHUTDOWN_GRACE, child.wait()).await;
                    }
                    let _ = child.kill().await;
                    return;
                }
                Some(status) => {
                    tracing::warn!(binary = %self.plan.binary, pid, ?status, "function process exited; starting a new one");
                    self.deaths.send_modify(|n| *n += 1);
                    tokio::time::sleep(RESTART_PAUSE).await;
                }
            }
        }
    }

    fn start(
        &self,
        instance: usize,
        program: &Path,
        runtime_api: &str,
        log_dir: Option<&Path>,
    ) -> Result<Child, LocalError> {
        let (stdout, stderr) = match log_dir {
            Some(dir) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{}.log", self.plan.binary)))
                    .map_err(|e| LocalError::Spawn(dir.display().to_string(), e))?;
                let copy = file
                    .try_clone()
                    .map_err(|e| LocalError::Spawn(dir.display().to_string(), e))?;
                (Stdio::from(file), Stdio::from(copy))
            }
            None => (Stdio::inherit(), Stdio::inherit()),
        };
        let child = Command::new(program)
            // A sandbox has only what the template and Lambda give it, nothing of this shell's.
            .env_clear()
            .envs(self.plan.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &self.plan.binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                self.plan.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_INSTANCE_ID", instance.to_string())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LocalError::Spawn(program.display().to_string(), e))?;
        lock(&self.starts).push(Start {
            at: Instant::now(),
            pid: child.id().unwrap_or_default(),
        });
        Ok(child)
    }

    /// SIGKILLs every process of this function, as a crashed sandbox; new ones start.
    pub fn kill_all(&self) -> usize {
        let pids = lock(&self.pids).clone();
        for pid in &pids {
            signal(*pid, "-KILL");
        }
        pids.len()
    }

    /// Makes the coming stop send SIGTERM first.
    pub fn stop_gracefully(&self) {
        self.graceful.store(true, Ordering::SeqCst);
    }

    /// Every process start so far, oldest first.
    pub fn starts(&self) -> Vec<Start> {
        lock(&self.starts).clone()
    }

    /// Resolves once a process of this function dies after this call.
    pub fn death(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut deaths = self.deaths.subscribe();
        deaths.mark_unchanged();
        async move {
            let _ = deaths.changed().await;
        }
    }
}

/// Sends a signal with `kill(1)`: the workspace forbids the unsafe a direct call needs.
fn signal(pid: u32, which: &str) {
    let _ = std::process::Command::new("kill")
        .args([which, &pid.to_string()])
        .status();
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The lists hold plain data that a panic cannot leave half-written.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

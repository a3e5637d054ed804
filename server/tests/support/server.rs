//! The process answering a test: `prism serve` (its log kept in the test's temp dir and printed
//! when the test fails) or the Lambda functions; started, killed, crashed one function at a
//! time, or stopped.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use super::{Backend, Env, PRISM};

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

pub struct Server {
    pub process: Process,
    pub base: String,
}

/// What answers at `base`.
pub enum Process {
    Prism(Child),
    Lambda(prism_lambda_local::LocalFunctions),
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

//! `prism-lambda-cold-start`: how long each of Prism's seven Lambda binaries takes from its
//! process start to its first event handled, on the local Lambda stack (`prism-lambda-local`:
//! cargo-lambda's runtime emulator over the AWS emulator that `AWS_ENDPOINT_URL` names).
//!
//! Every function gets a first event that is cheap but real, sent while its process is still
//! starting (the runtime emulator holds it until the process polls for it): `api` an
//! authenticated `GET /v1/async/{id}` of a job that does not exist (the key lookup and the job
//! read both run; 404), the reconciler a "Scheduled Event" (one reconcile pass), every SQS
//! function `{"Records":[]}`. Cold start = the process's start, as the stack's supervisor
//! records it, to the end of that first response. Then a second, warm event of the same kind.
//!
//! Measured per function, each repeated:
//! - `alone`: on a running stack (one process per function), one function's process is
//!   SIGKILLed and the event goes out as soon as the supervisor has started its fresh process;
//!   the other functions are idle. The closest to one Lambda sandbox's cold start.
//! - `stack`: the whole stack starts (seven processes at once, as after a deploy, sharing the
//!   machine's cores) and all seven events go out at once.
//! - `init`: the binary started by this driver against a stub of the Lambda Runtime API, from
//!   its spawn to its first `GET …/invocation/next`: its init alone (config from SSM, the
//!   provider key from Secrets Manager, SDK clients), without cargo-lambda or an event.
//! - the floor: `<binary> --version` (exec, dynamic loading and exit), and the emulator calls
//!   init makes, timed from this process.
//!
//! Prints a markdown report on stdout (progress on stderr); `--json` and `--samples` keep every
//! sample. `bench/lambda.sh` runs it; results are in BENCHMARKS.md.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use prism_app::aws::CONFIG_PARAMETER_ENV;
use prism_aws::{AwsBackend, ProvisionOptions, ProvisionedStack, provision_stack};
use prism_core::ids::IdGenerator;
use prism_core::{Clock, SystemClock};
use prism_lambda_local::{LocalFunctions, RunOptions, create_api_key, emulator_env};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

mod report;
#[cfg(test)]
use report::percentile;
use report::{Report, Sample, markdown, stats, write_samples};

/// The seven functions, in the order of the report.
const FUNCTIONS: [&str; 7] = [
    "api",
    "async-worker",
    "reconciler",
    "dead-letters",
    "batch-planner",
    "batch-processor",
    "batch-finalizer",
];
/// How long a fresh process may take to appear after its predecessor was killed.
const RESTART_WAIT: Duration = Duration::from_secs(10);

#[derive(Debug, Parser)]
#[command(
    name = "prism-lambda-cold-start",
    version,
    about = "Cold starts of Prism's Lambda binaries on the local stack (cargo-lambda)"
)]
struct Cli {
    /// Resources are named PREFIX-… on the emulator (AWS_ENDPOINT_URL).
    #[arg(long, default_value = "bench-cold")]
    prefix: String,
    /// Prism configuration (TOML) put into the config parameter; default: the template's own
    /// value, whose provider key each function then reads from Secrets Manager at init.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The cargo workspace (cargo-lambda reads its manifest).
    #[arg(long, default_value = ".")]
    workspace: PathBuf,
    /// The function binaries to measure (default: WORKSPACE/target/debug).
    #[arg(long)]
    binary_dir: Option<PathBuf>,
    /// The cargo-lambda executable.
    #[arg(long, env = "CARGO_LAMBDA", default_value = "cargo-lambda")]
    cargo_lambda: PathBuf,
    /// Label of the binaries in the report (debug, release, …).
    #[arg(long, default_value = "debug")]
    label: String,
    /// Cold starts per function with the rest of the stack idle.
    #[arg(long, default_value_t = 10)]
    alone: usize,
    /// Starts of the whole stack, every function's first event at once.
    #[arg(long, default_value_t = 5)]
    stack: usize,
    /// Inits per function against the stub runtime API, and `--version` runs per binary.
    #[arg(long, default_value_t = 10)]
    init: usize,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_seconds, default_value = "60")]
    timeout: Duration,
    /// Each function's log goes to DIR/<mode>/<binary>.log (default: discarded).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Also write every sample to this CSV file.
    #[arg(long)]
    samples: Option<PathBuf>,
    /// Also write the summaries and every sample as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("invalid number of seconds {text:?}"))?;
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Where a function's events go.
#[derive(Debug, Clone)]
enum Probe {
    /// `GET {base}/v1/async/{missing id}` with the key: 404 after the key and job lookups.
    Api { base: String, key: String },
    /// `POST` of `event` to the function's Invoke API URL: 200 with a JSON answer.
    Invoke { url: String, event: Value },
}

impl Probe {
    fn for_function(functions: &LocalFunctions, binary: &str, key: &str) -> Self {
        match binary {
            "api" => Probe::Api {
                base: functions.api_url(),
                key: key.to_owned(),
            },
            "reconciler" => Probe::Invoke {
                url: functions.invoke_url(binary),
                event: scheduled_event(),
            },
            _ => Probe::Invoke {
                url: functions.invoke_url(binary),
                event: json!({ "Records": [] }),
            },
        }
    }

    /// Sends the event and reads the whole answer; an unexpected answer is an error.
    async fn hit(&self, http: &reqwest::Client) -> anyhow::Result<()> {
        match self {
            Probe::Api { base, key } => {
                let id = IdGenerator::new().job_id(SystemClock.now());
                let url = format!("{base}/v1/async/{id}");
                let response = http
                    .get(&url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .with_context(|| format!("GET {url}"))?;
                let status = response.status();
                let body = response.bytes().await.context("reading the answer")?;
                if status != reqwest::StatusCode::NOT_FOUND {
                    bail!(
                        "GET {url}: expected 404, got {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
            }
            Probe::Invoke { url, event } => {
                let response = http
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(event.to_string())
                    .send()
                    .await
                    .with_context(|| format!("POST {url}"))?;
                let status = response.status();
                let body = response.bytes().await.context("reading the answer")?;
                if status != reqwest::StatusCode::OK {
                    bail!(
                        "POST {url}: expected 200, got {status}: {}",
                        String::from_utf8_lossy(&body)
                    );
                }
                serde_json::from_slice::<Value>(&body).with_context(|| {
                    format!(
                        "POST {url}: the answer is not JSON: {}",
                        String::from_utf8_lossy(&body)
                    )
                })?;
            }
        }
        Ok(())
    }

    /// First event (its end), then the warm one (its duration).
    async fn cold_then_warm(
        &self,
        http: &reqwest::Client,
    ) -> (anyhow::Result<Instant>, Option<f64>) {
        if let Err(error) = self.hit(http).await {
            return (Err(error), None);
        }
        let first_end = Instant::now();
        let warm = self.hit(http).await.ok().map(|()| ms(first_end.elapsed()));
        (Ok(first_end), warm)
    }
}

/// What the reconciler's EventBridge rule sends (infra/events/scheduler-reconcile.json).
fn scheduled_event() -> Value {
    let now = SystemClock.now();
    json!({
        "version": "0",
        "id": format!("bench-{}", now.millis()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": prism_core::clock::format_rfc3339(now),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/bench-cold-start"],
        "detail": {},
    })
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// A client that opens a fresh connection per request: on a reused one, cargo-lambda's
/// function URL often stalls the end of a response for a delayed ACK (about 40 ms; see
/// BENCHMARKS.md), which would be measured as the function's time.
fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(0)
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")
}

struct Bench {
    cli: Cli,
    stack: ProvisionedStack,
    key: String,
    binary_dir: PathBuf,
    workspace: PathBuf,
    samples: Vec<Sample>,
    /// `LocalFunctions::start` (runtime emulator listening) per stack start, ms.
    stack_ready_ms: Vec<f64>,
    /// From `LocalFunctions::start` to the last of the seven first answers, ms.
    stack_all_answered_ms: Vec<f64>,
}

impl Bench {
    fn run_options(&self, mode: &str) -> RunOptions {
        RunOptions {
            cargo_lambda: self.cli.cargo_lambda.clone(),
            binary_dir: self.binary_dir.clone(),
            port: 0,
            instances: 1,
            api_instances: 1,
            // The reconciler's rule would invoke it every minute, in the middle of the runs.
            rule_period: Some(Duration::from_secs(24 * 3600)),
            log_dir: self.cli.log_dir.as_ref().map(|dir| dir.join(mode)),
            extra_env: emulator_env(|name| std::env::var(name).ok()),
            ..RunOptions::for_workspace(self.workspace.clone())
        }
    }

    /// One start of the whole stack: every function's first event at once.
    async fn stack_round(&mut self, round: usize) -> anyhow::Result<()> {
        let begun = Instant::now();
        let functions = LocalFunctions::start(&self.stack, &self.run_options("stack"))
            .await
            .context("cannot start the local stack")?;
        self.stack_ready_ms.push(ms(begun.elapsed()));
        let http = http_client(self.cli.timeout)?;
        let mut tasks = tokio::task::JoinSet::new();
        for binary in FUNCTIONS {
            let probe = Probe::for_function(&functions, binary, &self.key);
            let http = http.clone();
            tasks.spawn(async move { (binary, probe.cold_then_warm(&http).await) });
        }
        let mut last = begun;
        while let Some(joined) = tasks.join_next().await {
            let (binary, (first, warm)) = joined.context("a probe task failed")?;
            let sample = match first {
                Ok(end) => {
                    last = last.max(end);
                    first_answer(&functions, "stack", binary, round, 0, end, warm)
                }
                Err(error) => Sample::failed("stack", binary, round, &error),
            };
            self.samples.push(sample);
        }
        self.stack_all_answered_ms.push(ms(last - begun));
        functions.kill().await;
        Ok(())
    }

    /// One stack, then per round each function's process killed and its successor measured.
    async fn alone_rounds(&mut self) -> anyhow::Result<()> {
        let functions = LocalFunctions::start(&self.stack, &self.run_options("alone"))
            .await
            .context("cannot start the local stack")?;
        let http = http_client(self.cli.timeout)?;
        let probes: Vec<(&str, Probe)> = FUNCTIONS
            .iter()
            .map(|b| (*b, Probe::for_function(&functions, b, &self.key)))
            .collect();
        // Every first process up and answering before the measured rounds.
        for (binary, probe) in &probes {
            probe
                .hit(&http)
                .await
                .with_context(|| format!("{binary} did not answer its first event"))?;
        }
        for round in 1..=self.cli.alone {
            for (binary, probe) in &probes {
                let sample = match self.alone_one(&functions, &http, binary, probe).await {
                    Ok((index, end, warm)) => {
                        first_answer(&functions, "alone", binary, round, index, end, warm)
                    }
                    Err(error) => Sample::failed("alone", binary, round, &error),
                };
                self.samples.push(sample);
                // Let the machine settle: the next kill measures a process of its own.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
        functions.kill().await;
        Ok(())
    }

    /// Kills `binary`'s process, waits for its successor to start, sends the event at once.
    async fn alone_one(
        &self,
        functions: &LocalFunctions,
        http: &reqwest::Client,
        binary: &str,
        probe: &Probe,
    ) -> anyhow::Result<(usize, Instant, Option<f64>)> {
        let supervisor = functions
            .function(binary)
            .with_context(|| format!("no function {binary} in the stack"))?;
        let before = supervisor.starts().len();
        if supervisor.kill_all() == 0 {
            bail!("no {binary} process to kill");
        }
        let waiting = Instant::now();
        while supervisor.starts().len() <= before {
            if waiting.elapsed() > RESTART_WAIT {
                bail!("no fresh {binary} process within {RESTART_WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (first, warm) = probe.cold_then_warm(http).await;
        Ok((before, first?, warm))
    }

    /// Each binary's init alone: spawn to its first poll of a stub runtime API.
    async fn init_rounds(&mut self) -> anyhow::Result<()> {
        let specs = self.stack.template().functions()?;
        for round in 1..=self.cli.init {
            for binary in FUNCTIONS {
                let spec = specs
                    .iter()
                    .find(|s| s.binary.as_deref() == Some(binary))
                    .with_context(|| format!("no function {binary} in the template"))?;
                let sample = match self.init_one(binary, spec.memory_mb).await {
                    Ok((pid, init)) => Sample::ok("init", binary, round, pid, ms(init)),
                    Err(error) => Sample::failed("init", binary, round, &error),
                };
                self.samples.push(sample);
            }
        }
        Ok(())
    }

    async fn init_one(&self, binary: &str, memory_mb: u32) -> anyhow::Result<(u32, Duration)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the stub runtime API")?;
        let port = listener.local_addr()?.port();
        let mut env = self.stack.function_env(binary)?;
        env.extend(self.stack.client_env());
        env.extend(emulator_env(|name| std::env::var(name).ok()));
        let output = match &self.cli.log_dir {
            Some(dir) => {
                let dir = dir.join("init");
                std::fs::create_dir_all(&dir)?;
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{binary}.log")))?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let program = self.binary_dir.join(binary);
        // As the stack's supervisor starts a function (shared/lambda-local/src/functions.rs).
        let mut child = Command::new(&program)
            .env_clear()
            .envs(env)
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", format!("http://127.0.0.1:{port}"))
            .env("AWS_LAMBDA_FUNCTION_NAME", binary)
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string())
            .env("AWS_LAMBDA_INSTANCE_ID", "0")
            .stdin(Stdio::null())
            .stdout(output.0)
            .stderr(output.1)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let started = Instant::now();
        let pid = child.id().unwrap_or_default();
        let polled = tokio::time::timeout(self.cli.timeout, first_request(&listener)).await;
        let polled_at = Instant::now();
        let _ = child.kill().await;
        let line = polled.map_err(|_| {
            anyhow::anyhow!("{binary} did not poll within {:?}", self.cli.timeout)
        })??;
        if !line.contains("/runtime/invocation/next") {
            bail!("{binary}'s first runtime API call was {line:?}, not a poll for an event");
        }
        Ok((pid, polled_at - started))
    }

    /// `<binary> --version`: exec, loading and exit, nothing of the function's init.
    async fn exec_rounds(&mut self) -> anyhow::Result<()> {
        for round in 1..=self.cli.init {
            for binary in FUNCTIONS {
                let program = self.binary_dir.join(binary);
                let started = Instant::now();
                let status = Command::new(&program)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .await
                    .with_context(|| format!("cannot run {}", program.display()))?;
                let took = ms(started.elapsed());
                self.samples.push(if status.success() {
                    Sample::ok("exec", binary, round, 0, took)
                } else {
                    Sample::failed(
                        "exec",
                        binary,
                        round,
                        &anyhow::anyhow!("--version exited {status}"),
                    )
                });
            }
        }
        Ok(())
    }

    /// The emulator calls of every function's init, timed from here: the SDK's config and
    /// clients, then the config parameter read on a fresh client (a new connection) and warm.
    async fn emulator_rounds(&mut self) -> anyhow::Result<()> {
        let parameter = self
            .stack
            .function_env("api")?
            .into_iter()
            .find(|(name, _)| name == CONFIG_PARAMETER_ENV)
            .map(|(_, value)| value)
            .with_context(|| format!("the template sets no {CONFIG_PARAMETER_ENV}"))?;
        for round in 1..=self.cli.init {
            let started = Instant::now();
            let backend = AwsBackend::connect(self.stack.settings.clone(), Duration::ZERO).await;
            self.samples.push(Sample::ok(
                "sdk-connect",
                "-",
                round,
                0,
                ms(started.elapsed()),
            ));
            for mode in ["ssm-first", "ssm-warm"] {
                let started = Instant::now();
                backend
                    .ssm
                    .get_parameter()
                    .name(&parameter)
                    .with_decryption(true)
                    .send()
                    .await
                    .with_context(|| format!("GetParameter {parameter}"))?;
                self.samples
                    .push(Sample::ok(mode, "-", round, 0, ms(started.elapsed())));
            }
        }
        Ok(())
    }
}

/// The sample of a first answer at `end` from the process start number `index` of `binary`.
fn first_answer(
    functions: &LocalFunctions,
    mode: &str,
    binary: &str,
    round: usize,
    index: usize,
    end: Instant,
    warm: Option<f64>,
) -> Sample {
    let starts = functions
        .function(binary)
        .map(|f| f.starts())
        .unwrap_or_default();
    match starts.get(index) {
        // A second start means the first process died: the answer may be the new one's.
        Some(start) if starts.len() == index + 1 => Sample {
            warm_ms: warm,
            ..Sample::ok(mode, binary, round, start.pid, ms(end - start.at))
        },
        _ => Sample::failed(
            mode,
            binary,
            round,
            &anyhow::anyhow!(
                "{} process starts recorded, expected {}",
                starts.len(),
                index + 1
            ),
        ),
    }
}

/// Accepts one connection and returns its request line once the headers are in.
async fn first_request(listener: &tokio::net::TcpListener) -> anyhow::Result<String> {
    let (mut socket, _) = listener.accept().await.context("accept")?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buffer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut chunk).await.context("reading the poll")?;
        if n == 0 {
            bail!("the connection closed before a whole request");
        }
        buffer.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&buffer);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

impl Bench {
    fn report(&self) -> Report<'_> {
        let mut all = Vec::new();
        for mode in ["alone", "stack", "init", "exec"] {
            for function in FUNCTIONS {
                all.push(stats(&self.samples, mode, function));
            }
        }
        for mode in ["sdk-connect", "ssm-first", "ssm-warm"] {
            all.push(stats(&self.samples, mode, "-"));
        }
        Report {
            label: &self.cli.label,
            binary_dir: self.binary_dir.display().to_string(),
            stats: all,
            stack_ready_ms: &self.stack_ready_ms,
            stack_all_answered_ms: &self.stack_all_answered_ms,
            samples: &self.samples,
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!(
            "AWS_ENDPOINT_URL is not set: this only runs against an AWS emulator (bench/lambda.sh starts one)"
        );
    }
    let workspace = std::fs::canonicalize(&cli.workspace)
        .with_context(|| format!("no workspace at {}", cli.workspace.display()))?;
    let binary_dir = cli
        .binary_dir
        .clone()
        .unwrap_or_else(|| workspace.join("target").join("debug"));
    for binary in FUNCTIONS {
        let path = binary_dir.join(binary);
        if !path.is_file() {
            bail!("{} is missing: build the functions first", path.display());
        }
    }
    let config_toml = match &cli.config {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        None => None,
    };
    let stack = provision_stack(
        &cli.prefix,
        &ProvisionOptions {
            visibility_override: Some(30),
            config_toml,
        },
    )
    .await
    .context("cannot provision the stack")?;
    let key = create_api_key(&stack, "bench-cold")
        .await
        .context("cannot create an API key")?;
    let mut bench = Bench {
        cli,
        stack,
        key,
        binary_dir,
        workspace,
        samples: Vec::new(),
        stack_ready_ms: Vec::new(),
        stack_all_answered_ms: Vec::new(),
    };
    eprintln!("exec and init, {} rounds", bench.cli.init);
    bench.exec_rounds().await?;
    bench.emulator_rounds().await?;
    bench.init_rounds().await?;
    eprintln!("one function at a time, {} rounds", bench.cli.alone);
    if bench.cli.alone > 0 {
        bench.alone_rounds().await?;
    }
    for round in 1..=bench.cli.stack {
        eprintln!("whole stack, start {round} of {}", bench.cli.stack);
        bench.stack_round(round).await?;
        // The killed processes' ports and the machine settle before the next start.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let report = bench.report();
    if let Some(path) = &bench.cli.samples {
        write_samples(path, &bench.samples)?;
    }
    if let Some(path) = &bench.cli.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    print!("{}", markdown(&report));
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0];
        assert_eq!(percentile(&values, 0.5), Some(5.0));
        assert_eq!(percentile(&values, 0.9), Some(9.0));
        assert_eq!(percentile(&values, 1.0), Some(10.0));
        assert_eq!(percentile(&[3.0], 0.5), Some(3.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn the_command_line_parses() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli =
            Cli::try_parse_from(["prism-lambda-cold-start", "--alone", "3", "--timeout", "5s"])
                .unwrap();
        assert_eq!(cli.alone, 3);
        assert_eq!(cli.timeout, Duration::from_secs(5));
    }

    #[test]
    fn every_function_gets_an_event_it_answers() {
        assert_eq!(scheduled_event()["detail-type"], "Scheduled Event");
        assert_eq!(FUNCTIONS.len(), 7);
    }
}

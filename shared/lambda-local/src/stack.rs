//! The local stack as a whole: from the template and a provisioned set of emulator resources,
//! start the runtime emulator, every function the template builds from this workspace, one
//! poller set per SQS event source mapping, the template's schedule rules and the schedule pump;
//! stop them all, or crash one function.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use prism_aws::{AwsBackend, ProvisionedStack};
use prism_core::ids::IdGenerator;
use prism_core::keys::mint_key;
use prism_core::ports::KeyStore;
use prism_core::{Clock, SystemClock, TenantId};
use tokio_util::sync::CancellationToken;

use crate::LocalError;
use crate::event_sources::{QueueMapping, spawn_pollers};
use crate::functions::{ControlPlane, FunctionPlan, Supervisor};
use crate::invoke::Invoker;
use crate::timers::{spawn_rule, spawn_schedule_pump};

/// How the local functions run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The `cargo-lambda` executable.
    pub cargo_lambda: PathBuf,
    /// The cargo workspace (cargo-lambda reads its manifest).
    pub workspace: PathBuf,
    /// Where the built function binaries are (`target/debug`).
    pub binary_dir: PathBuf,
    /// The runtime emulator's port; 0 picks a free one.
    pub port: u16,
    /// Processes per function (sandboxes), each serving one invocation at a time.
    pub instances: usize,
    /// Processes of the HTTP function, which serves every request of every client.
    pub api_instances: usize,
    /// Period of every schedule rule instead of the template's (tests reconcile every few
    /// seconds, not every minute).
    pub rule_period: Option<Duration>,
    /// How often due one-time schedules are fired.
    pub pump_period: Duration,
    /// One `<binary>.log` per function here; none: the functions write to this process's output.
    pub log_dir: Option<PathBuf>,
    /// Added to every function's environment: the emulator's endpoint and credentials (what
    /// the Lambda service would give instead), and a provider key if the caller has one.
    pub extra_env: Vec<(String, String)>,
}

impl RunOptions {
    /// Defaults for the workspace at `workspace`, with its debug binaries.
    pub fn for_workspace(workspace: PathBuf) -> Self {
        Self {
            cargo_lambda: PathBuf::from("cargo-lambda"),
            binary_dir: workspace.join("target").join("debug"),
            workspace,
            port: 0,
            instances: 2,
            api_instances: 4,
            rule_period: None,
            pump_period: Duration::from_secs(1),
            log_dir: None,
            extra_env: Vec::new(),
        }
    }
}

/// The HTTP function: the template's function with the API's events.
const API_BINARY: &str = "api";

/// Everything running. Dropping it kills every process too.
pub struct LocalFunctions {
    control: ControlPlane,
    functions: BTreeMap<String, Arc<Supervisor>>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalFunctions {
    /// Starts every function of the stack's template built from this workspace.
    pub async fn start(stack: &ProvisionedStack, options: &RunOptions) -> Result<Self, LocalError> {
        let template = stack.template();
        let port = match options.port {
            0 => free_port()?,
            port => port,
        };
        if let Some(dir) = &options.log_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| LocalError::Spawn(dir.display().to_string(), e))?;
        }
        let log = match &options.log_dir {
            Some(dir) => Stdio::from(
                std::fs::File::create(dir.join("cargo-lambda.log"))
                    .map_err(|e| LocalError::Spawn(dir.display().to_string(), e))?,
            ),
            None => Stdio::inherit(),
        };
        let control =
            ControlPlane::start(&options.cargo_lambda, &options.workspace, port, log).await?;
        let stop = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut functions = BTreeMap::new();
        let mut by_logical_id = BTreeMap::new();
        for spec in template.functions()? {
            let Some(binary) = spec.binary.clone() else {
                continue;
            };
            let mut env = stack
                .function_env(&spec.logical_id)
                .map_err(|e| LocalError::Template(e.to_string()))?;
            env.extend(stack.client_env());
            env.extend(options.extra_env.iter().cloned());
            let plan = FunctionPlan {
                logical_id: spec.logical_id.clone(),
                instances: if binary == API_BINARY {
                    options.api_instances
                } else {
                    options.instances
                },
                binary: binary.clone(),
                env,
                memory_mb: spec.memory_mb,
                timeout: Duration::from_secs(u64::from(spec.timeout_seconds)),
            };
            let supervisor = Supervisor::new(plan);
            tasks.extend(supervisor.spawn(
                &options.binary_dir,
                control.runtime_api(&binary),
                options.log_dir.clone(),
                stop.clone(),
            ));
            by_logical_id.insert(spec.logical_id.clone(), Arc::clone(&supervisor));
            functions.insert(binary, supervisor);
        }
        let http = reqwest::Client::new();
        let invoker = |logical_id: &str| -> Result<Invoker, LocalError> {
            let supervisor = by_logical_id
                .get(logical_id)
                .ok_or_else(|| LocalError::Template(format!("no function {logical_id}")))?;
            Ok(Invoker::new(
                http.clone(),
                control.invoke_url(&supervisor.plan().binary),
                Arc::clone(supervisor),
                stop.clone(),
            ))
        };
        let region = options
            .extra_env
            .iter()
            .find(|(k, _)| k == "AWS_REGION")
            .map_or_else(|| "us-east-1".to_owned(), |(_, v)| v.clone());
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let sqs = aws_sdk_sqs::Client::new(&config);
        for spec in template.queue_mappings()? {
            let target = invoker(&spec.function)?;
            let instances = target.function().plan().instances;
            let mapping = QueueMapping {
                queue_url: stack
                    .queue_url(&spec.queue)
                    .ok_or_else(|| LocalError::Template(format!("no queue {}", spec.queue)))?
                    .to_owned(),
                queue_arn: stack
                    .resource(&spec.queue)
                    .ok_or_else(|| LocalError::Template(format!("no queue {}", spec.queue)))?
                    .arn
                    .clone(),
                batch_size: spec.batch_size,
                batching_window: Duration::from_secs(u64::from(spec.max_batching_window_seconds)),
                report_batch_item_failures: spec.report_batch_item_failures,
                // More pollers than sandboxes would only queue invocations at the emulator.
                concurrency: spec
                    .maximum_concurrency
                    .map_or(instances, |max| instances.min(max as usize)),
                logical_id: spec.logical_id,
            };
            tasks.extend(spawn_pollers(
                sqs.clone(),
                mapping,
                target,
                region.clone(),
                stop.clone(),
            ));
        }
        for rule in template.schedule_rules()? {
            if !rule.enabled {
                continue;
            }
            let Some(period) = options.rule_period.or_else(|| rule.interval()) else {
                tracing::warn!(expression = %rule.expression, "only rate(...) rules run locally");
                continue;
            };
            tasks.push(spawn_rule(
                invoker(&rule.function)?,
                format!("{}-{}", rule.function, rule.event),
                period,
                region.clone(),
                stop.clone(),
            ));
        }
        tasks.push(spawn_schedule_pump(
            stack.settings.schedules.group.clone(),
            options.pump_period,
            stop.clone(),
        ));
        Ok(Self {
            control,
            functions,
            stop,
            tasks,
        })
    }

    /// The API's base URL without `/v1` (`OpenAI(base_url=…/v1)`).
    pub fn api_url(&self) -> String {
        self.control.function_url(API_BINARY)
    }

    /// Where an invocation of `binary` is posted (Lambda's Invoke API).
    pub fn invoke_url(&self, binary: &str) -> String {
        self.control.invoke_url(binary)
    }

    /// The function running `binary`.
    pub fn function(&self, binary: &str) -> Option<&Arc<Supervisor>> {
        self.functions.get(binary)
    }

    /// SIGKILLs every process of `binary` (a crashed sandbox); fresh ones start. Returns how
    /// many were killed.
    pub fn crash(&self, binary: &str) -> usize {
        self.functions.get(binary).map_or(0, |f| f.kill_all())
    }

    /// Stops the pollers, the rules and every process at once (SIGKILL): a crash of everything.
    pub async fn kill(self) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.control.stop().await;
    }

    /// Stops the pollers and the rules, then every process as Lambda ends a sandbox: SIGTERM,
    /// and SIGKILL after a grace period.
    pub async fn stop(self) {
        for function in self.functions.values() {
            function.stop_gracefully();
        }
        self.kill().await;
    }
}

/// Mints a key for `tenant` in the stack's table; returns the secret.
pub async fn create_api_key(stack: &ProvisionedStack, tenant: &str) -> Result<String, LocalError> {
    let tenant = TenantId::parse(tenant)
        .ok_or_else(|| LocalError::Template(format!("invalid tenant {tenant:?}")))?;
    let backend = AwsBackend::connect(stack.settings.clone(), Duration::ZERO).await;
    let now = SystemClock.now();
    let minted = mint_key(IdGenerator::new().key_id(now), tenant, now);
    backend
        .keys
        .insert(&minted.record)
        .await
        .map_err(|e| LocalError::Store(e.to_string()))?;
    Ok(minted.secret)
}

fn free_port() -> Result<u16, LocalError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| LocalError::Spawn("a free port".into(), e))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| LocalError::Spawn("a free port".into(), e))
}

/// Variables of this process that a local function gets on top of the template's: what the
/// Lambda service would set (region, credentials, here the emulator's), the emulator's endpoint,
/// and the default provider's key if set.
pub fn emulator_env(get: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    const PASSED: [&str; 7] = [
        "AWS_ENDPOINT_URL",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
        "OPENAI_API_KEY",
    ];
    PASSED
        .iter()
        .filter_map(|name| get(name).map(|value| ((*name).to_owned(), value)))
        .collect()
}

//! `prism-local-aws`: Prism's seven Lambda binaries on this machine, against the AWS emulator
//! that `AWS_ENDPOINT_URL` names, with the stand-ins for what AWS does between them. Provisions
//! the template's resources under a prefix, prints `PRISM_BASE_URL=…` and `PRISM_API_KEY=…`,
//! and runs until interrupted. `scripts/local-aws.sh` starts the emulator and runs this.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use prism_aws::{ProvisionOptions, provision_stack};
use prism_lambda_local::{LocalFunctions, RunOptions, create_api_key, emulator_env};

/// Runs Prism's Lambda functions locally (cargo-lambda's runtime emulator) over the AWS emulator
/// named by AWS_ENDPOINT_URL. Refuses to run without it: this never creates resources in a real
/// account.
#[derive(Debug, Parser)]
#[command(name = "prism-local-aws", version)]
struct Args {
    /// Resources are named PREFIX-…
    #[arg(long, default_value = "prism-local")]
    prefix: String,
    /// Prism configuration (TOML) for the functions, stored in the config parameter. Without
    /// it every model goes to a mock upstream started here (it echoes the last message).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Port of the runtime emulator (invokes and the API's function URL); 0 picks a free one.
    #[arg(long, default_value_t = 9000)]
    port: u16,
    /// Processes per function, each serving one invocation at a time.
    #[arg(long, default_value_t = 2)]
    instances: usize,
    /// Processes of the api function.
    #[arg(long, default_value_t = 4)]
    api_instances: usize,
    /// Period of the reconciler's rule instead of the template's (e.g. 5s).
    #[arg(long, value_parser = humantime::parse_duration)]
    rule_period: Option<Duration>,
    /// Visibility timeout of every work queue instead of the template's (short ones redeliver a
    /// crashed function's messages sooner).
    #[arg(long)]
    visibility: Option<u32>,
    /// Tenant of the API key created and printed.
    #[arg(long, default_value = "default")]
    tenant: String,
    /// Write each function's log to DIR/<binary>.log instead of this terminal.
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// The cargo-lambda executable.
    #[arg(long, env = "CARGO_LAMBDA", default_value = "cargo-lambda")]
    cargo_lambda: PathBuf,
    /// The built function binaries.
    #[arg(long)]
    binary_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PRISM_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    if std::env::var_os("AWS_ENDPOINT_URL").is_none() {
        bail!(
            "AWS_ENDPOINT_URL is not set: prism-local-aws only runs against an AWS emulator \
             (scripts/local-aws.sh starts one); deploy to an account with `sam deploy`"
        );
    }
    let workspace = std::env::current_dir()?;
    let mut mock = None;
    let config = match &args.config {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?,
        None => {
            let upstream = prism_testkit::spawn_mock_upstream("127.0.0.1:0".parse()?).await?;
            let text = format!(
                "[[providers]]\nname = \"mock\"\nbase_url = \"{}\"\nmodels = [\"*\"]\n",
                upstream.base_url()
            );
            eprintln!(
                "prism-local-aws: no --config, so every model goes to the mock upstream at {}",
                upstream.base_url()
            );
            mock = Some(upstream);
            text
        }
    };
    let stack = provision_stack(
        &args.prefix,
        &ProvisionOptions {
            visibility_override: args.visibility,
            config_toml: Some(config),
        },
    )
    .await?;
    let key = create_api_key(&stack, &args.tenant).await?;
    let options = RunOptions {
        cargo_lambda: args.cargo_lambda,
        binary_dir: args
            .binary_dir
            .unwrap_or_else(|| workspace.join("target").join("debug")),
        port: args.port,
        instances: args.instances,
        api_instances: args.api_instances,
        rule_period: args.rule_period,
        log_dir: args.log_dir,
        extra_env: emulator_env(|name| std::env::var(name).ok()),
        ..RunOptions::for_workspace(workspace)
    };
    let functions = LocalFunctions::start(&stack, &options).await?;
    // Scripts and tests read these two lines.
    println!("PRISM_BASE_URL={}/v1", functions.api_url());
    println!("PRISM_API_KEY={key}");
    wait_for_interrupt().await?;
    functions.stop().await;
    if let Some(upstream) = mock {
        upstream.shutdown().await;
    }
    Ok(())
}

async fn wait_for_interrupt() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

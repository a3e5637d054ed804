//! `prism-provision PREFIX`: creates a complete, uniquely named stack of the AWS backend's
//! resources, as `infra/template.yaml` declares them, on the emulator `AWS_ENDPOINT_URL` names,
//! and prints the environment that uses them, one `NAME=value` per line: the one `prism` needs,
//! or with `--env-for` the one the template gives a function. For local development and the SDK
//! test suite; deployments use the template with SAM. Without an endpoint it refuses, since the
//! standard credential chain would otherwise reach a real account.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use prism_aws::{ProvisionOptions, StackTemplate, provision_stack};

/// The exit code of a refusal or a usage error (clap's own for usage errors).
const REFUSED: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "prism-provision",
    version,
    about = "Create the AWS backend's resources from infra/template.yaml on an emulator and print \
             the environment that uses them.",
    after_help = "Resources are named PREFIX-<logical id in kebab case> (the config parameter \
                  /PREFIX/config, as the template names it). Needs AWS_ENDPOINT_URL (e.g. a \
                  moto_server) and the usual AWS_REGION and credentials; without an endpoint it \
                  refuses (exit 2) unless --allow-real-aws-account names the credentials' \
                  account. Exit status: 0 created, 1 creation failed, 2 usage error or refusal."
)]
struct Cli {
    /// Prefix of every resource name, and the stack name (lowercase letters, digits, hyphens).
    #[arg(value_name = "PREFIX")]
    prefix: String,

    /// Every queue's visibility timeout: the one deliberate difference from the template (whose
    /// timeouts are 6 x the consumer's Lambda timeout), so unacknowledged messages come back
    /// within seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 30,
        value_parser = clap::value_parser!(u32).range(0..=43_200),
        conflicts_with = "template_visibility"
    )]
    visibility: u32,

    /// Keep the template's visibility timeouts instead.
    #[arg(long)]
    template_visibility: bool,

    /// TOML configuration to put into the config parameter (default: the template's value, with
    /// a stand-in secret for the provider key).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Print the environment the template gives this function (logical id such as
    /// AsyncWorkerFunction, or binary such as async-worker), resolved against the new stack,
    /// instead of the one `prism` needs.
    #[arg(long, value_name = "FUNCTION")]
    env_for: Option<String>,

    /// Allow running without AWS_ENDPOINT_URL, against the real AWS account whose 12-digit id
    /// this is; the credentials' account is checked first (STS GetCallerIdentity).
    #[arg(long, value_name = "ACCOUNT_ID", value_parser = account_id)]
    allow_real_aws_account: Option<String>,
}

fn account_id(value: &str) -> Result<String, String> {
    if value.len() == 12 && value.chars().all(|c| c.is_ascii_digit()) {
        Ok(value.to_owned())
    } else {
        Err("an AWS account id is 12 digits".into())
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("prism-provision: {message}");
            ExitCode::from(code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), (u8, String)> {
    let refuse = |message: String| (REFUSED, message);
    // Everything that can be checked without AWS is checked before anything is created.
    let template = StackTemplate::bundled().map_err(|e| refuse(e.to_string()))?;
    if let Some(function) = &cli.env_for {
        template
            .function(function)
            .map_err(|e| refuse(e.to_string()))?;
    }
    let config_toml = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| refuse(format!("cannot read {}: {e}", path.display())))?;
            toml::from_str::<toml::Table>(&text)
                .map_err(|e| refuse(format!("{} is not TOML: {e}", path.display())))?;
            Some(text)
        }
        None => None,
    };
    check_target(cli.allow_real_aws_account.as_deref()).await?;

    let options = ProvisionOptions {
        visibility_override: (!cli.template_visibility).then_some(cli.visibility),
        config_toml,
    };
    let stack = provision_stack(&cli.prefix, &options)
        .await
        .map_err(|e| (1, e.to_string()))?;
    let lines: Vec<(String, String)> = match &cli.env_for {
        Some(function) => {
            let mut env = stack
                .function_env(function)
                .map_err(|e| (1, e.to_string()))?;
            env.extend(stack.client_env());
            env
        }
        None => std::iter::once(("PRISM_BACKEND".to_owned(), "aws".to_owned()))
            .chain(
                stack
                    .settings
                    .to_env()
                    .into_iter()
                    .map(|(name, value)| (name.to_owned(), value)),
            )
            .collect(),
    };
    for (name, value) in lines {
        println!("{name}={value}");
    }
    Ok(())
}

/// The endpoint the SDK will use, as it decides: `AWS_ENDPOINT_URL` unless
/// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS` is set.
fn configured_endpoint() -> Option<String> {
    let ignored = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
        .is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    std::env::var("AWS_ENDPOINT_URL")
        .ok()
        .filter(|v| !v.is_empty() && !ignored)
}

/// An emulator, or the real account the operator named.
async fn check_target(allowed_account: Option<&str>) -> Result<(), (u8, String)> {
    if configured_endpoint().is_some() {
        return Ok(());
    }
    let Some(allowed) = allowed_account else {
        return Err((
            REFUSED,
            "AWS_ENDPOINT_URL is not set, so the resources would be created in a real AWS \
             account. Point AWS_ENDPOINT_URL at an emulator (e.g. .venv/bin/moto_server), deploy \
             infra/template.yaml with SAM for a real account, or pass \
             --allow-real-aws-account ACCOUNT_ID to create this test stack in that sandbox \
             account on purpose."
                .into(),
        ));
    };
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let identity = aws_sdk_sts::Client::new(&config)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            (
                REFUSED,
                format!(
                    "cannot tell which account the credentials are for (STS \
                     GetCallerIdentity): {}",
                    aws_sdk_sts::error::DisplayErrorContext(e)
                ),
            )
        })?;
    match identity.account.as_deref() {
        Some(account) if account == allowed => Ok(()),
        other => Err((
            REFUSED,
            format!(
                "the credentials are for account {}, not {allowed}: nothing was created",
                other.unwrap_or("(unknown)")
            ),
        )),
    }
}

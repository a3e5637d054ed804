//! The command line every Lambda binary shares. Lambda starts `bootstrap` without arguments, so
//! no arguments means "serve invocations"; `--help` says what the function is, which trigger it
//! expects and which environment it reads, `--version` prints the version, and anything else is
//! a usage error (exit code 2) rather than a silent start of the runtime.

use std::ffi::OsString;
use std::fmt::Write as _;

use clap::Command;
use prism_app::aws::CONFIG_PARAMETER_ENV;

/// What `--help` says about one function.
#[derive(Debug, Clone, Copy)]
pub struct FunctionInfo {
    /// The binary's name (`api`, `async-worker`, ...).
    pub name: &'static str,
    /// One sentence: what the function does.
    pub about: &'static str,
    /// The event source that invokes it, as the SAM template wires it.
    pub trigger: &'static str,
    /// Variables it reads besides [`BACKEND_ENV`] and [`COMMON_ENV`].
    pub env: &'static [(&'static str, &'static str)],
}

/// Every function builds the whole AWS backend, so every one needs all of these (the SAM
/// template sets them in `Globals`); a missing one stops the function at start, naming it.
pub const BACKEND_ENV: &[(&str, &str)] = &[
    ("PRISM_TABLE", "DynamoDB table: jobs, batches, files, keys"),
    ("PRISM_JOBS_QUEUE_URL", "SQS jobs queue"),
    ("PRISM_JOBS_DLQ_URL", "SQS jobs dead-letter queue"),
    ("PRISM_PLAN_QUEUE_URL", "SQS batch plan queue"),
    ("PRISM_PLAN_DLQ_URL", "its dead-letter queue"),
    ("PRISM_CHUNK_QUEUE_URL", "SQS batch chunk queue"),
    ("PRISM_CHUNK_DLQ_URL", "its dead-letter queue"),
    ("PRISM_FINALIZE_QUEUE_URL", "SQS batch finalize queue"),
    ("PRISM_FINALIZE_DLQ_URL", "its dead-letter queue"),
    ("PRISM_WEBHOOKS_QUEUE_URL", "SQS webhooks queue"),
    ("PRISM_WEBHOOKS_DLQ_URL", "its dead-letter queue"),
    (
        "PRISM_BUCKET",
        "S3 bucket: spilled bodies, files, batch parts",
    ),
    ("PRISM_SCHEDULE_GROUP", "EventBridge Scheduler group"),
    ("PRISM_JOBS_QUEUE_ARN", "target of scheduled-job schedules"),
    (
        "PRISM_FINALIZE_QUEUE_ARN",
        "target of batch-expiry schedules",
    ),
    ("PRISM_SCHEDULER_ROLE_ARN", "role the schedules run with"),
    (
        "PRISM_SCHEDULES_DLQ_ARN",
        "dead-letter queue of the schedules",
    ),
];

/// Optional variables every function reads.
pub const COMMON_ENV: &[(&str, &str)] = &[
    (
        CONFIG_PARAMETER_ENV,
        "SSM parameter holding the TOML configuration (built-in defaults when unset)",
    ),
    (
        "PRISM_S3_FORCE_PATH_STYLE",
        "`true` to address S3 by path (emulators)",
    ),
    (
        "RUST_LOG",
        "log filter (default `info`); logs are JSON lines",
    ),
    (
        "PRISM_METRICS_NAMESPACE",
        "CloudWatch namespace of the EMF metrics (default `Prism`)",
    ),
    (
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTLP/HTTP traces URL: spans exported, flushed per invocation",
    ),
    (
        "OTEL_SERVICE_NAME",
        "`service.name` of the exported spans (default `prism`)",
    ),
    (
        "AWS_REGION, AWS_ENDPOINT_URL",
        "the AWS SDK's usual variables (Lambda sets the region)",
    ),
];

/// Parses the process's arguments: returns when there are none (Lambda's case), otherwise prints
/// the help or version and exits 0, or prints the usage error and exits 2.
pub fn handle_flags(info: &FunctionInfo) {
    if let Err(outcome) = parse_flags(info, std::env::args_os()) {
        outcome.exit();
    }
}

/// [`handle_flags`] without the exit: `Ok` means "run the function"; the error carries the text
/// to print and the exit code (`0` for `--help` and `--version`, `2` for a usage error).
/// `args` starts with the program name, like `std::env::args_os`.
pub fn parse_flags<I, T>(info: &FunctionInfo, args: I) -> Result<(), clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    command(info).try_get_matches_from(args).map(|_| ())
}

fn command(info: &FunctionInfo) -> Command {
    Command::new(info.name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(info.about)
        .after_help(footer(info))
}

fn footer(info: &FunctionInfo) -> String {
    let mut text = format!(
        "Runs as an AWS Lambda function (custom runtime): started without arguments, it serves \
         invocations from the Lambda Runtime API (AWS_LAMBDA_RUNTIME_API and the other AWS_LAMBDA_* \
         variables Lambda sets) until the sandbox ends.\n\nTrigger: {}\n",
        info.trigger
    );
    let sections: [(&str, &[(&str, &str)]); 3] = [
        ("Environment (function-specific)", info.env),
        (
            "Environment (required, set by the SAM template)",
            BACKEND_ENV,
        ),
        ("Environment (optional)", COMMON_ENV),
    ];
    let width = sections
        .iter()
        .flat_map(|(_, vars)| vars.iter())
        .map(|(name, _)| name.len())
        .max()
        .unwrap_or(0);
    for (title, vars) in sections {
        if vars.is_empty() {
            continue;
        }
        let _ = write!(text, "\n{title}:\n");
        for (name, what) in vars {
            let _ = writeln!(text, "  {name:width$}  {what}");
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use clap::error::ErrorKind;
    use prism_aws::AwsSettings;

    use super::*;

    const WORKER: FunctionInfo = FunctionInfo {
        name: "async-worker",
        about: "Runs async jobs.",
        trigger: "SQS jobs queue",
        env: &[],
    };

    #[test]
    fn no_arguments_means_run_the_function() {
        assert!(parse_flags(&WORKER, ["bootstrap"]).is_ok());
    }

    #[test]
    fn help_names_the_function_its_trigger_and_its_environment_and_exits_zero() {
        for flag in ["--help", "-h"] {
            let outcome = parse_flags(&WORKER, ["bootstrap", flag]).unwrap_err();

            assert_eq!(outcome.kind(), ErrorKind::DisplayHelp);
            assert_eq!(outcome.exit_code(), 0);
            let text = outcome.render().to_string();
            assert!(text.contains("Runs async jobs."), "{text}");
            assert!(text.contains("Trigger: SQS jobs queue"), "{text}");
            assert!(text.contains("PRISM_TABLE"), "{text}");
            assert!(text.contains("PRISM_CONFIG_PARAMETER"), "{text}");
        }
    }

    #[test]
    fn version_prints_the_workspace_version_and_exits_zero() {
        let outcome = parse_flags(&WORKER, ["bootstrap", "--version"]).unwrap_err();

        assert_eq!(outcome.kind(), ErrorKind::DisplayVersion);
        assert_eq!(outcome.exit_code(), 0);
        assert_eq!(
            outcome.render().to_string().trim(),
            format!("async-worker {}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn any_other_argument_is_a_usage_error_with_exit_code_two() {
        for args in [
            &["bootstrap", "--port"][..],
            &["bootstrap", "serve"],
            &["bootstrap", "-x"],
        ] {
            let outcome = parse_flags(&WORKER, args).unwrap_err();

            assert_eq!(outcome.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn the_listed_backend_variables_are_exactly_the_ones_the_backend_requires() {
        let listed = |name: &str| BACKEND_ENV.iter().any(|(n, _)| *n == name);

        let settings = AwsSettings::from_lookup(|name| listed(name).then(|| "x".to_owned()))
            .expect("the listed variables are enough to build the backend");

        for (name, _) in settings.to_env() {
            assert!(
                listed(name) || COMMON_ENV.iter().any(|(n, _)| n.contains(name)),
                "{name} is read but not listed"
            );
        }
    }
}

//! `prism-loadgen`: an open-loop load generator for Prism (and for the mock upstream directly),
//! a closed-loop one for throughput at saturation, an end-to-end async throughput driver, and
//! the report `bench/run.sh` prints.

mod client;
mod closed_loop;
mod e2e;
mod open_loop;
mod report;
mod stats;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

#[derive(Debug, Parser)]
#[command(
    name = "prism-loadgen",
    version,
    about = "Open-loop load generator for Prism"
)]
struct Cli {
    /// Tokio worker threads of the generator. Keep it small on small machines: the generator
    /// shares the CPU with the server it measures.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    /// Print a JSON summary on stdout; the human-readable lines then go to stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Synchronous chat completions at a fixed rate; expects 200.
    Sync(OpenLoopArgs),
    /// Async submits (`x-prism-async: true`) at a fixed rate; expects 202.
    Submit(OpenLoopArgs),
    /// `GET /v1/async/{id}` of one job at a fixed rate; expects 200 (reads while writes burst).
    Get(GetArgs),
    /// Synchronous chat completions from N clients, each sending the next as soon as it has
    /// the answer (closed loop); reports requests per second at saturation.
    Closed(ClosedArgs),
    /// Submit N async jobs with bounded concurrency and wait for all of them to complete.
    E2e(E2eArgs),
    /// Print the markdown summary of a `bench/run.sh` run from its JSON outputs.
    Report(ReportArgs),
    /// Print a TCP port that is free on 127.0.0.1 right now.
    FreePort,
}

#[derive(Debug, Args)]
struct TargetArgs {
    /// Base URL of Prism or of the upstream, e.g. http://127.0.0.1:8080 (a trailing /v1 is fine).
    #[arg(long)]
    url: String,
    /// API key sent as a bearer token (the mock ignores it).
    #[arg(long, env = "PRISM_KEY", hide_env_values = true, default_value = "")]
    key: String,
    /// Model named in every request.
    #[arg(long, default_value = "mock")]
    model: String,
    /// Per-request timeout.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct OpenLoopArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Requests per second.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// Measured period (`10s`, `500ms`, `1m`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    duration: Duration,
    /// Unmeasured period on the same schedule before it.
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Requests in flight beyond which a due request is dropped (and counted) instead of sent.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Also write every measured request (send time, latencies, outcome) to this CSV file.
    #[arg(long)]
    samples: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    open_loop: OpenLoopArgs,
    /// The job to read.
    #[arg(long)]
    job_id: String,
}

#[derive(Debug, Args)]
struct ClosedArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Clients, each with one request in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Measured period.
    #[arg(long, value_parser = parse_duration, default_value = "5s")]
    duration: Duration,
    /// Unmeasured period before it.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    warmup: Duration,
}

#[derive(Debug, Args)]
struct E2eArgs {
    #[command(flatten)]
    target: TargetArgs,
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Concurrent submitters, and concurrent pollers with `--poll each`.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    #[arg(long, value_enum, default_value_t = e2e::PollMode::List)]
    poll: e2e::PollMode,
    /// Pause between polls of an unfinished job (or list).
    #[arg(long, value_parser = parse_duration, default_value = "10ms")]
    poll_interval: Duration,
    /// Give up if the jobs are not all finished this long after the first submit.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    deadline: Duration,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// JSON of `sync` against the mock directly.
    #[arg(long)]
    direct: PathBuf,
    /// JSON of `sync` through Prism.
    #[arg(long)]
    prism: PathBuf,
    /// JSON of `submit`.
    #[arg(long)]
    submit: PathBuf,
    /// JSON of `e2e`.
    #[arg(long)]
    e2e: PathBuf,
    /// Prism's peak resident set size in KiB (VmHWM).
    #[arg(long)]
    peak_rss_kib: Option<u64>,
}

/// Parses `250ms`, `10s`, `2m`, `1.5s`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: expected e.g. 500ms, 10s, 2m"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("invalid duration {text:?}: {e}"))
}

/// Prints the human-readable lines, and the JSON when asked for (human lines then on stderr).
fn emit<T: Serialize>(json: bool, human: &str, summary: &T) -> anyhow::Result<()> {
    if json {
        eprintln!("{human}");
        let text = serde_json::to_string_pretty(summary).context("cannot encode the summary")?;
        println!("{text}");
    } else {
        println!("{human}");
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).context("cannot bind a port")?;
    Ok(listener.local_addr().context("no local address")?.port())
}

/// The target of a run and the HTTP client that loads it.
fn connect(args: &TargetArgs) -> anyhow::Result<(client::Target, reqwest::Client)> {
    let target = client::Target::new(&args.url, Some(args.key.clone()))?;
    Ok((target, client::build_client(args.timeout)?))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Sync(args) => open_loop_mode(open_loop::Mode::Sync, args, None, cli.json).await,
        Command::Submit(args) => {
            open_loop_mode(open_loop::Mode::Submit, args, None, cli.json).await
        }
        Command::Get(args) => {
            open_loop_mode(
                open_loop::Mode::Get,
                args.open_loop,
                Some(args.job_id),
                cli.json,
            )
            .await
        }
        Command::Closed(args) => {
            let (target, http) = connect(&args.target)?;
            let plan = closed_loop::Plan {
                concurrency: args.concurrency,
                duration: args.duration,
                warmup: args.warmup,
                model: args.target.model,
            };
            let summary = closed_loop::run(http, &target, &plan).await?;
            emit(cli.json, &summary.human(), &summary)?;
            if summary.errors > 0 {
                anyhow::bail!("{} requests failed", summary.errors);
            }
            Ok(())
        }
        Command::E2e(args) => {
            let (target, http) = connect(&args.target)?;
            let plan = e2e::Plan {
                jobs: args.jobs,
                concurrency: args.concurrency,
                model: args.target.model,
                poll: args.poll,
                poll_interval: args.poll_interval,
                deadline: args.deadline,
            };
            let summary = e2e::run(http, &target, &plan).await?;
            emit(cli.json, &summary.human(), &summary)?;
            if !summary.all_completed() {
                anyhow::bail!(
                    "{} of {} jobs did not complete",
                    summary.jobs.saturating_sub(summary.completed),
                    summary.jobs
                );
            }
            Ok(())
        }
        Command::Report(args) => {
            let inputs = report::Inputs::load(
                &args.direct,
                &args.prism,
                &args.submit,
                &args.e2e,
                args.peak_rss_kib,
            )?;
            print!("{}", report::markdown(&inputs));
            Ok(())
        }
        Command::FreePort => {
            println!("{}", free_port()?);
            Ok(())
        }
    }
}

async fn open_loop_mode(
    mode: open_loop::Mode,
    args: OpenLoopArgs,
    job_id: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let (target, http) = connect(&args.target)?;
    let plan = open_loop::Plan {
        mode,
        rate: args.rate,
        duration: args.duration,
        warmup: args.warmup,
        max_in_flight: args.max_in_flight,
        model: args.target.model,
        samples: args.samples,
        job_id,
    };
    let summary = open_loop::run(http, &target, &plan).await?;
    emit(json, &summary.human(), &summary)?;
    if summary.errors + summary.dropped > 0 {
        anyhow::bail!(
            "{} requests failed and {} were dropped",
            summary.errors,
            summary.dropped
        );
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    runtime.block_on(run(cli))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::try_parse_from([
            "prism-loadgen",
            "--json",
            "sync",
            "--url",
            "http://h:1",
            "--rate",
            "50",
            "--duration",
            "1s",
        ])
        .unwrap();
        assert!(cli.json);
        assert!(matches!(cli.command, Command::Sync(ref a) if a.rate == 50.0));
    }
}

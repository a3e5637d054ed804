//! Command-line arguments of the `prism` commands that are clients of a running Prism
//! (`batches`, `files`, `jobs`, `scheduled`).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// Where Prism runs and how to print; the key comes from `PRISM_API_KEY` only, so it never shows
/// in a process listing or a shell history.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Prism's base URL, as the OpenAI SDKs take it (ending in /v1).
    #[arg(
        long,
        global = true,
        env = "PRISM_BASE_URL",
        default_value = "http://127.0.0.1:8080/v1"
    )]
    pub base_url: String,
    /// Print Prism's JSON objects instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BatchesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: BatchesCommand,
}

#[derive(Debug, Subcommand)]
pub enum BatchesCommand {
    /// Upload a JSONL file of chat completion requests and create a batch over it.
    Create {
        file: PathBuf,
        /// Show the batch's progress until it ends, then write its output and error files next to
        /// FILE (FILE's name with .output.jsonl and .errors.jsonl). Ctrl-C asks whether to cancel.
        #[arg(long)]
        wait: bool,
        /// Metadata of the batch, KEY=VALUE (repeatable).
        #[arg(long, value_parser = key_value)]
        metadata: Vec<(String, String)>,
        /// How often --wait reads the batch.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        poll_interval: Duration,
    },
    /// Show a batch.
    Get { id: String },
    /// List the batches, newest first.
    List {
        #[arg(long)]
        limit: Option<u32>,
        /// A batch id: list the batches after it.
        #[arg(long)]
        after: Option<String>,
    },
    /// Cancel a batch: finished lines stay in its output file.
    Cancel { id: String },
    /// Write a finished batch's output file (or its error file) to stdout or a file.
    Output {
        id: String,
        /// The error file instead of the output file.
        #[arg(long)]
        errors: bool,
        /// Write to this file instead of stdout.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: JobsCommand,
}

/// Async jobs (chat completions sent with `x-prism-async: true`).
#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Show a job (with its result once completed).
    Get { id: String },
    /// List the jobs, newest first.
    List(ListArgs),
    /// Cancel a pending or running job.
    Cancel { id: String },
}

#[derive(Debug, Args)]
pub struct ScheduledArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ScheduledCommand,
}

#[derive(Debug, Subcommand)]
pub enum ScheduledCommand {
    /// Schedule a chat completion: --model and --prompt, or a whole request body with --request.
    Create {
        /// When to run it: RFC 3339 with an offset (2026-12-05T09:00:00Z).
        #[arg(long, required_unless_present = "after", conflicts_with = "after")]
        at: Option<String>,
        /// When to run it, from now: 90s, 10m, 2h.
        #[arg(long, value_parser = humantime::parse_duration)]
        after: Option<Duration>,
        /// The model of the request.
        #[arg(long, required_unless_present = "request", conflicts_with = "request")]
        model: Option<String>,
        /// The user message.
        #[arg(long, requires = "model")]
        prompt: Option<String>,
        /// A chat completion request body (JSON), or - for stdin.
        #[arg(long)]
        request: Option<PathBuf>,
        /// Metadata of the job, KEY=VALUE (repeatable).
        #[arg(long, value_parser = key_value)]
        metadata: Vec<(String, String)>,
        /// Makes the create safe to repeat: the same key and body give the same job.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show a scheduled job.
    Get { id: String },
    /// List the scheduled jobs, newest first.
    List(ListArgs),
    /// Cancel a scheduled job: a pending one never runs.
    Cancel { id: String },
}

#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[arg(long)]
    pub limit: Option<u32>,
    /// A job id: list the jobs after it.
    #[arg(long)]
    pub after: Option<String>,
    /// Only jobs with this status (pending, running, completed, failed, cancelled).
    #[arg(long)]
    pub status: Option<String>,
}

fn key_value(pair: &str) -> Result<(String, String), String> {
    pair.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{pair:?} is not KEY=VALUE"))
}

#[derive(Debug, Args)]
pub struct FilesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: FilesCommand,
}

#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// Upload a file and print its id: a file larger than one part goes through the Uploads API
    /// (parts sent in parallel), a smaller one to POST /v1/files.
    Upload {
        path: PathBuf,
        #[arg(long, default_value = "batch")]
        purpose: String,
        /// Bytes per part (the AWS backend takes parts of up to about 4 MB).
        #[arg(long, default_value_t = crate::client::uploads::DEFAULT_PART_SIZE)]
        part_size: u64,
        /// Parts sent at once.
        #[arg(long, default_value_t = crate::client::uploads::DEFAULT_PARALLEL_PARTS)]
        parallel: usize,
    },
}

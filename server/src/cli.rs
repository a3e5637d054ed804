//! Command-line arguments of `prism`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::remote_args::{BatchesArgs, FilesArgs, JobsArgs, ScheduledArgs};

#[derive(Debug, Parser)]
#[command(
    name = "prism",
    version,
    about = "OpenAI-compatible gateway for async, scheduled and batch chat completions"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "PRISM_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and run the workers in this process.
    Serve(ServeArgs),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Batches on a running Prism: upload and create (and watch), show, list, cancel, output.
    Batches(BatchesArgs),
    /// Async jobs on a running Prism: show, list, cancel.
    Jobs(JobsArgs),
    /// Scheduled jobs on a running Prism: create, show, list, cancel.
    Scheduled(ScheduledArgs),
    /// Files on a running Prism: upload (large files through the Uploads API).
    Files(FilesArgs),
    /// Manage tenants' webhook endpoints.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// Where state, queues and files live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// SQLite and local files in `--data-dir`.
    Embedded,
    /// DynamoDB, SQS and S3, named by `PRISM_TABLE`, `PRISM_JOBS_QUEUE_URL`,
    /// `PRISM_JOBS_DLQ_URL` and `PRISM_BUCKET`; endpoints from the standard `AWS_*` variables.
    Aws,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    #[arg(long, env = "PRISM_BACKEND", default_value = "embedded")]
    pub backend: Backend,
    #[command(flatten)]
    pub data: DataDirArg,
    /// TOML configuration file; without one every model routes to OpenAI with OPENAI_API_KEY.
    #[arg(long, env = "PRISM_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Where the embedded database lives.
    #[arg(long, default_value = "./prism-data")]
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    #[arg(long, env = "PRISM_BACKEND", default_value = "embedded")]
    pub backend: Backend,
    #[command(flatten)]
    pub data: DataDirArg,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key for a tenant and print it (only the key) on stdout.
    Create {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List keys (ids, tenants, prefixes; never the keys).
    List {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by id or by the prefix `keys list` shows.
    Revoke {
        key: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Create an endpoint and print it with its signing secret (shown only now).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        url: String,
        /// Event types to send (comma-separated); all of them when absent.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Accept loopback, private and link-local targets over http (as `[webhooks]
        /// allow_private_targets`).
        #[arg(long)]
        allow_private_targets: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's endpoints (never their secrets).
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Delete one of a tenant's endpoints.
    Delete {
        id: String,
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

//! The `prism batches|jobs|scheduled` commands: each reads its arguments, calls the client
//! functions of [`crate::client`], and prints a table or `--json`. Errors are typed here; `main`
//! turns an [`Outcome`] into the exit status.

mod batches;
mod output;
mod scheduled;

use std::path::PathBuf;

use crate::client::jobs::{self, JobKind, ListQuery};
use crate::client::progress::UploadDisplay;
use crate::client::uploads::{self, UploadPlan};
use crate::client::{Client, ClientError};
use crate::remote_args::{
    BatchesArgs, ClientArgs, FilesArgs, FilesCommand, JobsArgs, JobsCommand, ListArgs,
    ScheduledArgs,
};

pub use output::Format;

/// How a command ended, for the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done as asked (exit 0).
    Done,
    /// A watched batch ended other than `completed` (exit 1).
    BatchNotCompleted,
    /// Ctrl-C while watching, and the batch left running (exit 130, as for SIGINT).
    StoppedWatching,
}

impl Outcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Done => 0,
            Outcome::BatchNotCompleted => 1,
            Outcome::StoppedWatching => 130,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("PRISM_API_KEY is not set: the commands that talk to Prism take their key from it")]
    MissingKey,
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArgument(String),
}

/// The client for `args`, with the key from `PRISM_API_KEY`.
pub fn client_from(args: &ClientArgs) -> Result<Client, CommandError> {
    let key = std::env::var("PRISM_API_KEY").map_err(|_| CommandError::MissingKey)?;
    Ok(Client::new(&args.base_url, key.trim())?)
}

pub async fn run_batches(args: BatchesArgs) -> Result<Outcome, CommandError> {
    let client = client_from(&args.client)?;
    batches::run(
        &client,
        args.command,
        Format::from_json_flag(args.client.json),
    )
    .await
}

/// `prism files upload`: the file id on stdout (the whole object with `--json`), progress on
/// stderr.
pub async fn run_files(args: FilesArgs) -> Result<Outcome, CommandError> {
    let client = client_from(&args.client)?;
    let FilesCommand::Upload {
        path,
        purpose,
        part_size,
        parallel,
    } = args.command;
    if part_size == 0 || parallel == 0 {
        return Err(CommandError::InvalidArgument(
            "--part-size and --parallel must be at least 1".into(),
        ));
    }
    let plan = UploadPlan {
        part_size,
        parallel,
    };
    let file = upload_with_progress(&client, &path, &purpose, plan).await?;
    Format::from_json_flag(args.client.json).file(&file);
    Ok(Outcome::Done)
}

/// Uploads `path` as `plan` says, showing its progress on stderr.
pub(crate) async fn upload_with_progress(
    client: &Client,
    path: &std::path::Path,
    purpose: &str,
    plan: UploadPlan,
) -> Result<crate::client::FileObject, CommandError> {
    let display = UploadDisplay::for_stderr();
    let file = uploads::upload_file(client, path, purpose, plan, &|p| display.report(p)).await;
    display.finish();
    Ok(file?)
}

pub async fn run_scheduled(args: ScheduledArgs) -> Result<Outcome, CommandError> {
    let client = client_from(&args.client)?;
    scheduled::run(
        &client,
        args.command,
        Format::from_json_flag(args.client.json),
    )
    .await
}

pub async fn run_jobs(args: JobsArgs) -> Result<Outcome, CommandError> {
    let client = client_from(&args.client)?;
    let format = Format::from_json_flag(args.client.json);
    let kind = JobKind::Async;
    match args.command {
        JobsCommand::Get { id } => format.job(&jobs::get(&client, kind, &id).await?),
        JobsCommand::List(list) => {
            format.jobs(&jobs::list(&client, kind, &list_query(list)).await?)
        }
        JobsCommand::Cancel { id } => format.job(&jobs::cancel(&client, kind, &id).await?),
    }
    Ok(Outcome::Done)
}

fn list_query(args: ListArgs) -> ListQuery {
    ListQuery {
        limit: args.limit,
        after: args.after,
        status: args.status,
    }
}

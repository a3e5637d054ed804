//! `prism batches …`: upload and create (and with `--wait` watch the batch to its end, then
//! write its output and error files next to the input), show, list, cancel, output.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{CommandError, Format, Outcome};
use crate::client::progress::Progress;
use crate::client::uploads::UploadPlan;
use crate::client::{Batch, Client, batches, files};
use crate::remote_args::BatchesCommand;

pub(super) async fn run(
    client: &Client,
    command: BatchesCommand,
    format: Format,
) -> Result<Outcome, CommandError> {
    match command {
        BatchesCommand::Create {
            file,
            wait,
            metadata,
            poll_interval,
        } => {
            let metadata: Map<String, Value> = metadata
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            // A large file goes up through the Uploads API, as `prism files upload` sends it.
            let uploaded =
                super::upload_with_progress(client, &file, "batch", UploadPlan::default()).await?;
            let batch = batches::create(client, &uploaded.id, &metadata).await?;
            if !wait {
                format.batch(&batch);
                return Ok(Outcome::Done);
            }
            create_and_wait(client, &file, &uploaded.id, batch, poll_interval, format).await
        }
        BatchesCommand::Get { id } => {
            format.batch(&batches::get(client, &id).await?);
            Ok(Outcome::Done)
        }
        BatchesCommand::List { limit, after } => {
            format.batches(&batches::list(client, limit, after.as_deref()).await?);
            Ok(Outcome::Done)
        }
        BatchesCommand::Cancel { id } => {
            format.batch(&batches::cancel(client, &id).await?);
            Ok(Outcome::Done)
        }
        BatchesCommand::Output { id, errors, output } => {
            let batch = batches::get(client, &id).await?;
            let (file_id, which) = if errors {
                (batch.error_file_id, "error file")
            } else {
                (batch.output_file_id, "output file")
            };
            let file_id = file_id.ok_or_else(|| {
                CommandError::InvalidArgument(format!(
                    "batch {id} ({}) has no {which}",
                    batch.status
                ))
            })?;
            match output {
                Some(path) => {
                    files::download(client, &file_id, &path).await?;
                }
                None => {
                    let mut stdout = async_stdout()?;
                    files::copy_content(client, &file_id, &mut stdout, Path::new("<stdout>"))
                        .await?;
                }
            }
            Ok(Outcome::Done)
        }
    }
}

async fn create_and_wait(
    client: &Client,
    input: &Path,
    input_file_id: &str,
    batch: Batch,
    poll_interval: Duration,
    format: Format,
) -> Result<Outcome, CommandError> {
    // Progress on stdout when it is a terminal; plain lines otherwise, on stderr under --json so
    // stdout stays one JSON document.
    let mut progress = match format {
        Format::Json => Progress::lines(Box::new(std::io::stderr())),
        Format::Table if std::io::stdout().is_terminal() => Progress::bar(),
        Format::Table => Progress::lines(Box::new(std::io::stdout())),
    };
    let mut interrupts = signal(SignalKind::interrupt()).map_err(|source| CommandError::Io {
        path: "SIGINT".into(),
        source,
    })?;
    progress.note(&format!(
        "{} created over {} ({input_file_id}); Ctrl-C to cancel it or leave it running",
        batch.id,
        input.display()
    ));
    let batch = match watch(client, batch, poll_interval, &mut progress, &mut interrupts).await? {
        Watched::Finished(batch) => batch,
        Watched::Left(batch) => {
            eprintln!(
                "batch {} keeps running: `prism batches get {}` shows it, `prism batches output {}` writes its output once it ends",
                batch.id, batch.id, batch.id
            );
            return Ok(Outcome::StoppedWatching);
        }
    };
    // SIGINT stays caught once watching began, so Ctrl-C while the results download is heard
    // here: it stops (the batch has ended; `batches output` writes them later).
    let written = tokio::select! {
        written = write_results(client, &batch, input) => written?,
        _ = interrupts.recv() => {
            eprintln!(
                "\nstopped writing the results of {}: `prism batches output {}` writes them",
                batch.id, batch.id
            );
            return Ok(Outcome::StoppedWatching);
        }
    };
    format.batch(&batch);
    for (path, bytes) in written {
        // Under --json, stdout holds only the batch.
        let line = format!("wrote {} ({bytes} bytes)", path.display());
        match format {
            Format::Json => eprintln!("{line}"),
            Format::Table => println!("{line}"),
        }
    }
    Ok(if batch.status == "completed" {
        Outcome::Done
    } else {
        Outcome::BatchNotCompleted
    })
}

/// Downloads the batch's output and error files (those it has) next to `input`.
async fn write_results(
    client: &Client,
    batch: &Batch,
    input: &Path,
) -> Result<Vec<(PathBuf, u64)>, CommandError> {
    let mut written = Vec::new();
    for (file_id, suffix) in [
        (&batch.output_file_id, "output"),
        (&batch.error_file_id, "errors"),
    ] {
        if let Some(file_id) = file_id {
            let path = next_to(input, suffix);
            let bytes = files::download(client, file_id, &path).await?;
            written.push((path, bytes));
        }
    }
    Ok(written)
}

enum Watched {
    Finished(Batch),
    /// Ctrl-C, and the batch was not to be cancelled.
    Left(Batch),
}

/// Reads the batch every `poll_interval` until it ends. Ctrl-C asks whether to cancel it: yes
/// cancels it and watches on until it is cancelled; no (or a second Ctrl-C) stops watching.
async fn watch(
    client: &Client,
    mut batch: Batch,
    poll_interval: Duration,
    progress: &mut Progress,
    interrupts: &mut Signal,
) -> Result<Watched, CommandError> {
    let mut cancel_asked = false;
    loop {
        progress.update(&batch);
        if batch.is_finished() {
            progress.finish();
            return Ok(Watched::Finished(batch));
        }
        tokio::select! {
            _ = tokio::time::sleep(poll_interval) => {}
            _ = interrupts.recv() => {
                progress.clear();
                if cancel_asked || !confirm_cancel(&batch.id, interrupts).await {
                    return Ok(Watched::Left(batch));
                }
                batches::cancel(client, &batch.id).await?;
                eprintln!("cancelling {}: finished lines stay in the output file", batch.id);
                cancel_asked = true;
            }
        }
        batch = batches::get(client, &batch.id).await?;
    }
}

/// Asks on stderr and reads the answer from stdin: only `y` or `yes` cancels; end of input or
/// another Ctrl-C is a no.
async fn confirm_cancel(batch_id: &str, interrupts: &mut Signal) -> bool {
    eprint!("\nCancel batch {batch_id}? [y/N] ");
    let answer = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    });
    tokio::select! {
        answer = answer => matches!(
            answer.ok().and_then(Result::ok).map(|a| a.trim().to_ascii_lowercase()).as_deref(),
            Some("y" | "yes")
        ),
        _ = interrupts.recv() => {
            eprintln!();
            false
        }
    }
}

/// Stdout as a tokio file (a duplicate of its descriptor), to stream a download to it.
fn async_stdout() -> Result<tokio::fs::File, CommandError> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| CommandError::Io {
            path: "<stdout>".into(),
            source,
        })?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

/// `dir/requests.jsonl` → `dir/requests.output.jsonl` (or `.errors.jsonl`).
fn next_to(input: &Path, suffix: &str) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "batch".into());
    input.with_file_name(format!("{stem}.{suffix}.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_are_named_after_the_input_next_to_it() {
        assert_eq!(
            next_to(Path::new("/data/requests.jsonl"), "output"),
            PathBuf::from("/data/requests.output.jsonl")
        );
        assert_eq!(
            next_to(Path::new("requests"), "errors"),
            PathBuf::from("requests.errors.jsonl")
        );
    }
}

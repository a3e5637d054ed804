//! `prism scheduled create|get|list|cancel`.

use std::io::Read;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use super::{CommandError, Format, Outcome, list_query};
use crate::client::Client;
use crate::client::jobs::{self, JobKind, NewScheduledJob};
use crate::remote_args::ScheduledCommand;

pub(super) async fn run(
    client: &Client,
    command: ScheduledCommand,
    format: Format,
) -> Result<Outcome, CommandError> {
    let kind = JobKind::Scheduled;
    match command {
        ScheduledCommand::Create {
            at,
            after,
            model,
            prompt,
            request,
            metadata,
            idempotency_key,
        } => {
            let scheduled_at = match (at, after) {
                (Some(at), _) => at,
                (None, Some(after)) => {
                    humantime::format_rfc3339_seconds(SystemTime::now() + after).to_string()
                }
                (None, None) => {
                    return Err(CommandError::InvalidArgument(
                        "--at or --after is needed".into(),
                    ));
                }
            };
            let request = match (request, model) {
                (Some(path), _) => read_request(&path)?,
                (None, Some(model)) => json!({
                    "model": model,
                    "messages": [{"role": "user", "content": prompt.unwrap_or_default()}],
                }),
                (None, None) => {
                    return Err(CommandError::InvalidArgument(
                        "--model or --request is needed".into(),
                    ));
                }
            };
            let job = NewScheduledJob {
                scheduled_at,
                request,
                metadata: metadata
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<Map<_, _>>(),
                idempotency_key,
            };
            format.job(&jobs::schedule(client, &job).await?);
        }
        ScheduledCommand::Get { id } => format.job(&jobs::get(client, kind, &id).await?),
        ScheduledCommand::List(list) => {
            format.jobs(&jobs::list(client, kind, &list_query(list)).await?)
        }
        ScheduledCommand::Cancel { id } => format.job(&jobs::cancel(client, kind, &id).await?),
    }
    Ok(Outcome::Done)
}

/// A request body from a file, or from stdin for `-`.
fn read_request(path: &std::path::Path) -> Result<Value, CommandError> {
    let io = |source| CommandError::Io {
        path: path.to_owned(),
        source,
    };
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).map_err(io)?;
        text
    } else {
        std::fs::read_to_string(path).map_err(io)?
    };
    serde_json::from_str(&text)
        .map_err(|e| CommandError::InvalidArgument(format!("{}: not JSON: {e}", path.display())))
}

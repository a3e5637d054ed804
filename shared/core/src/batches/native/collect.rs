//! Reading an ended provider batch back into the batch's lines: its output and error files are
//! streamed a line at a time, each returned line put under the caller's `custom_id`, each line
//! the provider did not return written as an error naming the provider's outcome.

use std::collections::HashMap;

use futures::StreamExt;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{GroupRecord, LineAt, ProviderBatch, line_of, unreturned_line_error};
use crate::batches::output::{error_line, response_line};
use crate::batches::{LineTarget, Usage};
use crate::deps::Deps;
use crate::ports::UpstreamError;

/// One line's result from a provider batch, ready for its chunk's part.
pub(crate) struct NativeLine {
    pub at: LineAt,
    pub target: LineTarget,
    pub json: String,
    pub usage: Usage,
}

#[derive(Deserialize)]
struct ProviderLine<'a> {
    custom_id: String,
    #[serde(borrow, default)]
    response: Option<ProviderResponse<'a>>,
    #[serde(default)]
    error: Option<ProviderLineError>,
}

#[derive(Deserialize)]
struct ProviderResponse<'a> {
    status_code: u16,
    #[serde(borrow)]
    body: &'a RawValue,
}

#[derive(Deserialize)]
struct ProviderLineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// Every line of the group from its ended provider batch, in input order, under the callers'
/// `custom_id`s (`custom_ids` maps each of the group's lines to its own).
pub(crate) async fn collect(
    deps: &Deps,
    record: &GroupRecord,
    ended: &ProviderBatch,
    custom_ids: &HashMap<LineAt, String>,
) -> Result<Vec<NativeLine>, UpstreamError> {
    let custom_id = |at: LineAt| custom_ids.get(&at).map_or("", String::as_str);
    let mut found: HashMap<LineAt, NativeLine> = HashMap::new();
    let wanted: std::collections::HashSet<LineAt> = record.lines.iter().copied().collect();
    for file in [&ended.output_file_id, &ended.error_file_id]
        .into_iter()
        .flatten()
    {
        let mut stream = deps
            .provider_batches
            .file_content(&record.provider, file)
            .await?;
        let mut buffer: Vec<u8> = Vec::new();
        let mut on_line = |raw: &[u8]| {
            let Ok(parsed) = serde_json::from_slice::<ProviderLine<'_>>(raw) else {
                return;
            };
            let Some(at) = line_of(&parsed.custom_id) else {
                return;
            };
            if !wanted.contains(&at) || found.contains_key(&at) {
                return;
            }
            found.insert(at, provider_line(deps, at, custom_id(at), &parsed));
        };
        while let Some(piece) = stream.next().await {
            buffer.extend_from_slice(&piece?);
            let mut start = 0;
            while let Some(end) = buffer[start..].iter().position(|b| *b == b'\n') {
                on_line(&buffer[start..start + end]);
                start += end + 1;
            }
            buffer.drain(..start);
        }
        if !buffer.is_empty() {
            on_line(&buffer);
        }
    }
    let (code, message) = unreturned_line_error(ended.status, &ended.errors);
    Ok(record
        .lines
        .iter()
        .map(|&at| {
            found.remove(&at).unwrap_or_else(|| NativeLine {
                at,
                target: LineTarget::Error,
                json: error_line(deps, custom_id(at), &code, &message),
                usage: Usage::default(),
            })
        })
        .collect())
}

fn provider_line(deps: &Deps, at: LineAt, custom_id: &str, line: &ProviderLine<'_>) -> NativeLine {
    match (&line.response, &line.error) {
        (Some(response), _) if response.status_code == 200 => NativeLine {
            at,
            target: LineTarget::Output,
            json: response_line(deps, custom_id, 200, response.body),
            usage: Usage::of_completion(response.body.get()),
        },
        (Some(response), _) => NativeLine {
            at,
            target: LineTarget::Error,
            json: response_line(deps, custom_id, response.status_code, response.body),
            usage: Usage::default(),
        },
        (None, error) => {
            let code = error
                .as_ref()
                .and_then(|e| e.code.as_deref())
                .unwrap_or("provider_error");
            let message = error
                .as_ref()
                .and_then(|e| e.message.as_deref())
                .unwrap_or("The provider returned no response for this request.");
            NativeLine {
                at,
                target: LineTarget::Error,
                json: error_line(deps, custom_id, code, message),
                usage: Usage::default(),
            }
        }
    }
}

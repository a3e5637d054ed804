//! Native mode: a chunk's lines that route to a `native` provider, grouped by (provider, model),
//! run as one provider batch per group. This module owns the group record (written as an intent
//! before the provider batch is created, so a crash never leads to a second paid batch), the
//! provider batch's submission, and turning its output and error files back into the chunk's
//! lines; the chunk processor polls and commits them ([`crate::batches::process`]).

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::batches::input::RequestLine;
use crate::batches::modes::BatchMode;
use crate::batches::output::{error_line, response_line};
use crate::batches::{Batch, BatchRef, BatchStatus, LineTarget, RequestCounts, Usage};
use crate::deps::Deps;
use crate::error::StoreError;
use crate::ports::{ProviderBatches, UpstreamError};

/// The metadata key naming the Prism batch a provider batch belongs to.
pub const METADATA_BATCH_ID: &str = "prism_batch_id";
/// The metadata key naming the group (batch, chunk, group) a provider batch runs.
pub const METADATA_GROUP: &str = "prism_group";
/// The longest wait between two looks at a provider batch.
pub const MAX_POLL_DELAY: Duration = Duration::from_secs(60);

/// A provider batch to create over an uploaded input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProviderBatch {
    pub input_file_id: String,
    pub endpoint: String,
    pub metadata: Vec<(String, String)>,
}

/// A provider batch as the provider shows it, in Prism's own status vocabulary (the provider's
/// is the same Batch API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderBatch {
    pub id: String,
    pub status: BatchStatus,
    pub input_file_id: Option<String>,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub counts: RequestCounts,
    /// Validation errors of a `failed` batch: code and message.
    pub errors: Vec<(String, String)>,
    pub metadata: HashMap<String, String>,
    pub created_at: u64,
}

/// A group of a chunk's lines run by one provider batch, as recorded in the blob store: first
/// without `provider_batch_id` (the intent: a batch may exist, look before creating one), then
/// with it. Deleted once the group's lines are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub provider: String,
    pub model: String,
    /// Unique per (batch, chunk, group); the provider batch carries it in its metadata.
    pub key: String,
    /// The lines' indexes within the chunk, in input order.
    pub lines: Vec<u32>,
    pub provider_batch_id: Option<String>,
}

/// The group's key, and the metadata value a provider batch is found by.
pub fn group_key(batch: &BatchRef, chunk: u32, group: usize) -> String {
    format!("{}-{chunk}-{group}", batch.id)
}

fn record_key(batch: &BatchRef, chunk: u32, group: usize) -> String {
    format!(
        "batches/{}/{}/native/{chunk:05}-{group:04}",
        batch.tenant, batch.id
    )
}

/// A line's `custom_id` at the provider: its index in the chunk, so results map back without
/// trusting the caller's ids to be unique.
pub fn provider_custom_id(index: u32) -> String {
    format!("line-{index}")
}

pub fn line_of(custom_id: &str) -> Option<u32> {
    custom_id.strip_prefix("line-")?.parse().ok()
}

/// The wait before the next look at a provider batch: 1 s doubling per look up to a minute (a
/// provider batch takes minutes to hours; looks are cheap but not free).
pub fn poll_delay(polls: u32) -> Duration {
    Duration::from_secs(1u64 << polls.min(6)).min(MAX_POLL_DELAY)
}

/// The error of a line a finished provider batch did not return: the provider's outcome.
pub fn unreturned_line_error(status: BatchStatus, errors: &[(String, String)]) -> (String, String) {
    let fixed = |code: &str, message: &str| (code.to_owned(), message.to_owned());
    match status {
        BatchStatus::Expired => fixed(
            "batch_expired",
            "This request could not be executed before the completion window expired.",
        ),
        BatchStatus::Cancelled | BatchStatus::Cancelling => fixed(
            "batch_cancelled",
            "This request was not executed because the batch was cancelled.",
        ),
        BatchStatus::Failed => errors.first().cloned().unwrap_or_else(|| {
            fixed(
                "batch_failed",
                "The provider failed the batch that held this request.",
            )
        }),
        _ => fixed(
            "provider_batch_incomplete",
            "The provider's batch ended without a result for this request.",
        ),
    }
}

/// The chunk's native groups: its lines that route to a `native` provider, grouped by (provider,
/// model) in order of first appearance. Every line counts, done or not, so a group's index is
/// the same on every delivery.
pub fn plan_groups(
    deps: &Deps,
    batch: &BatchRef,
    chunk: u32,
    lines: &[RequestLine],
) -> Vec<GroupRecord> {
    let mut groups: Vec<GroupRecord> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        let Some(route) = deps.upstream.batch_route(&line.model) else {
            continue;
        };
        if route.mode != BatchMode::Native {
            continue;
        }
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        match groups
            .iter_mut()
            .find(|g| g.provider == route.provider && g.model == line.model)
        {
            Some(group) => group.lines.push(index),
            None => {
                let key = group_key(batch, chunk, groups.len());
                groups.push(GroupRecord {
                    provider: route.provider,
                    model: line.model.clone(),
                    key,
                    lines: vec![index],
                    provider_batch_id: None,
                });
            }
        }
    }
    groups
}

/// A native group as this delivery found it.
#[derive(Debug)]
pub enum GroupState {
    /// Its provider batch runs (or has ended and awaits collection).
    Submitted { slot: usize, record: GroupRecord },
    /// Submission failed for now; the chunk comes back later.
    Retry(UpstreamError),
    /// The provider refused the group for good: its lines fail with this error.
    Refused {
        slot: usize,
        record: GroupRecord,
        error: UpstreamError,
    },
}

async fn read_record(deps: &Deps, key: &str) -> Option<GroupRecord> {
    // The blob ports do not tell "absent" from "unreadable"; either way the provider is asked
    // before anything is created, so a lost record cannot lead to a second batch.
    let mut stream = deps.blobs.get(key).await.ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
    }
    serde_json::from_slice(&bytes).ok()
}

async fn write_record(deps: &Deps, key: &str, record: &GroupRecord) -> Result<(), StoreError> {
    let body = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    crate::batches::process::store_part(deps, key, body).await
}

/// Makes sure every group with unfinished lines has its provider batch: resumes a recorded
/// one, finds one a crash left unrecorded (by its metadata), or records the intent, uploads the
/// group's sub-file and creates it. Groups whose lines are all done are dropped.
pub async fn submit_groups(
    deps: &Deps,
    batch: &BatchRef,
    current: &Batch,
    chunk: u32,
    lines: &[RequestLine],
    done: &[bool],
) -> Result<Vec<GroupState>, StoreError> {
    let mut states = Vec::new();
    for (slot, planned) in plan_groups(deps, batch, chunk, lines)
        .into_iter()
        .enumerate()
    {
        let key = record_key(batch, chunk, slot);
        let unfinished = planned
            .lines
            .iter()
            .any(|i| !done.get(*i as usize).copied().unwrap_or(false));
        if !unfinished {
            // Committed by an earlier delivery that died before cleaning up.
            if let Some(record) = read_record(deps, &key).await {
                clean_up(deps, batch, chunk, slot, &record, None).await;
            }
            continue;
        }
        let record = match read_record(deps, &key).await {
            Some(record) if record.provider_batch_id.is_some() => {
                states.push(GroupState::Submitted { slot, record });
                continue;
            }
            Some(intent) => intent,
            None => {
                write_record(deps, &key, &planned).await?;
                planned
            }
        };
        states.push(create_once(deps, current, lines, slot, &key, record).await?);
    }
    Ok(states)
}

/// The one place a provider batch is created: only after its intent is recorded, and only when
/// the provider holds none for the group yet.
async fn create_once(
    deps: &Deps,
    current: &Batch,
    lines: &[RequestLine],
    slot: usize,
    key: &str,
    mut record: GroupRecord,
) -> Result<GroupState, StoreError> {
    let api = &deps.provider_batches;
    let since = u64::try_from(current.created_at.unix_seconds()).unwrap_or(0);
    let found = match api
        .find_batch(&record.provider, METADATA_GROUP, &record.key, since)
        .await
    {
        Ok(found) => found,
        Err(error) => return Ok(GroupState::Retry(error)),
    };
    let created = match found {
        Some(existing) => {
            tracing::info!(group = %record.key, provider_batch = %existing.id, "found the provider batch a crash left unrecorded");
            existing
        }
        None => match create(deps, current, lines, &record).await {
            Ok(created) => created,
            Err(error) if error.is_retryable() => return Ok(GroupState::Retry(error)),
            Err(error) => {
                return Ok(GroupState::Refused {
                    slot,
                    record,
                    error,
                });
            }
        },
    };
    record.provider_batch_id = Some(created.id);
    write_record(deps, key, &record).await?;
    Ok(GroupState::Submitted { slot, record })
}

async fn create(
    deps: &Deps,
    current: &Batch,
    lines: &[RequestLine],
    record: &GroupRecord,
) -> Result<ProviderBatch, UpstreamError> {
    let api = deps.provider_batches.as_ref();
    let mut file = Vec::new();
    for index in &record.lines {
        let Some(line) = lines.get(*index as usize) else {
            continue;
        };
        let body = String::from_utf8_lossy(&line.body);
        let body = RawValue::from_string(body.into_owned())
            .map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        let json = serde_json::json!({
            "custom_id": provider_custom_id(*index),
            "method": "POST",
            "url": current.endpoint,
            "body": body,
        });
        serde_json::to_writer(&mut file, &json)
            .map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        file.push(b'\n');
    }
    let filename = format!("{}.jsonl", record.key);
    let input_file_id = api
        .upload_batch_file(&record.provider, &filename, Bytes::from(file))
        .await?;
    let request = NewProviderBatch {
        input_file_id,
        endpoint: current.endpoint.path().to_owned(),
        metadata: vec![
            (METADATA_BATCH_ID.to_owned(), current.id.to_string()),
            (METADATA_GROUP.to_owned(), record.key.clone()),
        ],
    };
    // Bounded well inside the chunk's lease, so no second holder of the chunk can look for the
    // batch while this create may still land (the upload before it may take as long as it must).
    let created = tokio::time::timeout(
        deps.batch_policy.lease / 3,
        api.create_batch(&record.provider, &request),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout))?;
    tracing::info!(group = %record.key, provider = %record.provider, provider_batch = %created.id, lines = record.lines.len(), "provider batch created");
    Ok(created)
}

/// One line's result from a provider batch, ready for the chunk's part.
pub(crate) struct NativeLine {
    pub index: u32,
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

/// The group's lines from its ended provider batch: each returned line under the caller's
/// `custom_id`, each line not returned as an error naming the provider's outcome; lines already
/// `done` are left out. The files are read as streams, a line at a time.
pub(crate) async fn collect(
    deps: &Deps,
    record: &GroupRecord,
    ended: &ProviderBatch,
    lines: &[RequestLine],
    done: &[bool],
) -> Result<Vec<NativeLine>, UpstreamError> {
    let mut wanted: HashMap<u32, bool> = record
        .lines
        .iter()
        .filter(|i| !done.get(**i as usize).copied().unwrap_or(false))
        .map(|i| (*i, false))
        .collect();
    let mut results = Vec::new();
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
            let Some(index) = line_of(&parsed.custom_id) else {
                return;
            };
            let Some(seen @ false) = wanted.get_mut(&index) else {
                return;
            };
            *seen = true;
            let custom_id = lines
                .get(index as usize)
                .map_or("", |l| l.custom_id.as_str());
            results.push(provider_line(deps, index, custom_id, &parsed));
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
    let mut missing: Vec<u32> = wanted
        .into_iter()
        .filter(|(_, seen)| !seen)
        .map(|(i, _)| i)
        .collect();
    missing.sort_unstable();
    for index in missing {
        let custom_id = lines
            .get(index as usize)
            .map_or("", |l| l.custom_id.as_str());
        results.push(NativeLine {
            index,
            target: LineTarget::Error,
            json: error_line(deps, custom_id, &code, &message),
            usage: Usage::default(),
        });
    }
    Ok(results)
}

fn provider_line(deps: &Deps, index: u32, custom_id: &str, line: &ProviderLine<'_>) -> NativeLine {
    match (&line.response, &line.error) {
        (Some(response), _) if response.status_code == 200 => NativeLine {
            index,
            target: LineTarget::Output,
            json: response_line(deps, custom_id, 200, response.body),
            usage: Usage::of_completion(response.body.get()),
        },
        (Some(response), _) => NativeLine {
            index,
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
                index,
                target: LineTarget::Error,
                json: error_line(deps, custom_id, code, message),
                usage: Usage::default(),
            }
        }
    }
}

/// Cancels the provider batches of submitted groups (best effort: one that cannot be reached
/// is looked at again, and its lines are kept if it ends).
pub(crate) async fn cancel_running(deps: &Deps, running: &[(usize, GroupRecord)]) {
    for (_, record) in running {
        let Some(id) = &record.provider_batch_id else {
            continue;
        };
        match deps
            .provider_batches
            .cancel_batch(&record.provider, id)
            .await
        {
            Ok(_) => tracing::info!(provider_batch = %id, "provider batch cancelled"),
            Err(error) => {
                tracing::info!(%error, provider_batch = %id, "could not cancel a provider batch")
            }
        }
    }
}

/// The batch stopped taking results: cancels every submitted group's provider batch.
pub(crate) async fn cancel_groups(deps: &Deps, groups: &[GroupState]) {
    let running: Vec<(usize, GroupRecord)> = groups
        .iter()
        .filter_map(|state| match state {
            GroupState::Submitted { slot, record } => Some((*slot, record.clone())),
            _ => None,
        })
        .collect();
    cancel_running(deps, &running).await;
}

/// After the group's lines are committed: the provider's files go (best effort: the provider
/// deletes them itself in 30 days), then the record.
pub(crate) async fn clean_up(
    deps: &Deps,
    batch: &BatchRef,
    chunk: u32,
    slot: usize,
    record: &GroupRecord,
    ended: Option<&ProviderBatch>,
) {
    if let Some(ended) = ended {
        let files = [
            &ended.input_file_id,
            &ended.output_file_id,
            &ended.error_file_id,
        ];
        for file in files.into_iter().flatten() {
            if let Err(error) = deps
                .provider_batches
                .delete_file(&record.provider, file)
                .await
            {
                tracing::debug!(%error, "could not delete a provider file");
            }
        }
    }
    if let Err(error) = deps.blobs.delete(&record_key(batch, chunk, slot)).await {
        tracing::debug!(%error, "could not delete a native group record");
    }
}

/// For a process with no provider batch client (tests, tools): every call fails as unrouted,
/// so `native` lines fail rather than run twice.
pub struct NoProviderBatches;

#[async_trait::async_trait]
impl ProviderBatches for NoProviderBatches {
    async fn upload_batch_file(&self, p: &str, _: &str, _: Bytes) -> Result<String, UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn create_batch(
        &self,
        p: &str,
        _: &NewProviderBatch,
    ) -> Result<ProviderBatch, UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn retrieve_batch(&self, p: &str, _: &str) -> Result<ProviderBatch, UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn find_batch(
        &self,
        p: &str,
        _: &str,
        _: &str,
        _: u64,
    ) -> Result<Option<ProviderBatch>, UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn cancel_batch(&self, p: &str, _: &str) -> Result<ProviderBatch, UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn file_content(
        &self,
        p: &str,
        _: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, UpstreamError>>, UpstreamError>
    {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
    async fn delete_file(&self, p: &str, _: &str) -> Result<(), UpstreamError> {
        Err(UpstreamError::NoRoute(p.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_custom_ids_map_back_to_chunk_lines() {
        assert_eq!(line_of(&provider_custom_id(42)), Some(42));
        assert_eq!(line_of("caller-id"), None);
        assert_eq!(line_of("line-x"), None);
    }

    #[test]
    fn polls_back_off_to_a_minute() {
        assert_eq!(poll_delay(0), Duration::from_secs(1));
        assert_eq!(poll_delay(3), Duration::from_secs(8));
        assert_eq!(poll_delay(40), MAX_POLL_DELAY);
    }

    #[test]
    fn unreturned_lines_carry_the_provider_batch_outcome() {
        assert_eq!(
            unreturned_line_error(BatchStatus::Expired, &[]).0,
            "batch_expired"
        );
        assert_eq!(
            unreturned_line_error(BatchStatus::Cancelled, &[]).0,
            "batch_cancelled"
        );
        let refused = [("invalid_request".to_owned(), "bad line".to_owned())];
        assert_eq!(
            unreturned_line_error(BatchStatus::Failed, &refused),
            refused[0].clone()
        );
        assert_eq!(
            unreturned_line_error(BatchStatus::Failed, &[]).0,
            "batch_failed"
        );
    }
}

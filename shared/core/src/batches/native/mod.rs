//! Native mode: the lines of a batch that route to a `native` provider run as provider batches,
//! one per (provider, model) group of the whole batch (split further only at the provider's own
//! file limits, [`group_lines`]). This module owns the vocabulary and the pure rules: the group
//! record (written as an intent before its provider batch is created, so a crash never leads to
//! a second paid batch), the grouping, the poll backoff, the live counts and the provider's
//! outcome of a line it did not return. [`groups`] prepares the groups at planning, [`poll`] is
//! the stateless look that submits, polls and collects them, [`collect`] reads a provider
//! batch's files back into the chunks' lines.

pub mod collect;
pub mod groups;
pub mod poll;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::batches::{BatchRef, BatchStatus, RequestCounts};
use crate::deps::Deps;
use crate::error::StoreError;
use crate::ports::{ProviderBatches, UpstreamError};

/// The metadata key naming the Prism batch a provider batch belongs to.
pub const METADATA_BATCH_ID: &str = "prism_batch_id";
/// The metadata key naming the group (batch, group) a provider batch runs.
pub const METADATA_GROUP: &str = "prism_group";
/// The longest wait between two looks at a running provider batch (a provider batch takes
/// minutes to hours; within one SQS delay, so a look is one delayed message).
pub const MAX_POLL_DELAY: Duration = Duration::from_secs(5 * 60);

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

/// Where a line sits in the batch: its chunk and its index among the chunk's request lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LineAt(pub u32, pub u32);

impl LineAt {
    pub fn chunk(self) -> u32 {
        self.0
    }
    pub fn line(self) -> u32 {
        self.1
    }
}

/// A group of the batch's lines run by one provider batch, as recorded in the blob store: first
/// without `provider_batch_id` (the intent: a batch may exist, look before creating one), then
/// with it. Deleted once the group's lines are committed (or the batch ended).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    pub provider: String,
    pub model: String,
    /// Unique per (batch, group); the provider batch carries it in its metadata.
    pub key: String,
    /// The group's lines, in input order.
    pub lines: Vec<LineAt>,
    pub provider_batch_id: Option<String>,
    /// Looks at the running provider batch so far (the backoff's step).
    #[serde(default)]
    pub polls: u32,
    /// When the next look is due (ms): a delivery well before it is a duplicate and is dropped,
    /// one well after it means the look's message was lost (the reconciler sends it again).
    #[serde(default)]
    pub next_poll_at: Option<i64>,
    /// The provider batch was asked to cancel.
    #[serde(default)]
    pub cancel_sent: bool,
}

/// How many groups planning made, so a redelivery or the reconciler can find each one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NativePlan {
    pub groups: u32,
}

/// The group's key, and the metadata value a provider batch is found by.
pub fn group_key(batch: &BatchRef, group: u32) -> String {
    format!("{}-g{group}", batch.id)
}

pub(crate) fn record_key(batch: &BatchRef, group: u32) -> String {
    format!("batches/{}/{}/native/{group:05}", batch.tenant, batch.id)
}

pub(crate) fn plan_key(batch: &BatchRef) -> String {
    format!("batches/{}/{}/native/plan", batch.tenant, batch.id)
}

/// A line's `custom_id` at the provider: where it sits, so results map back without trusting
/// the caller's ids to be unique.
pub fn provider_custom_id(at: LineAt) -> String {
    format!("line-{}-{}", at.chunk(), at.line())
}

pub fn line_of(custom_id: &str) -> Option<LineAt> {
    let (chunk, line) = custom_id.strip_prefix("line-")?.split_once('-')?;
    Some(LineAt(chunk.parse().ok()?, line.parse().ok()?))
}

/// The wait before the next look at a provider batch: 1 s doubling per look up to
/// [`MAX_POLL_DELAY`].
pub fn poll_delay(polls: u32) -> Duration {
    Duration::from_secs(1u64 << polls.min(9)).min(MAX_POLL_DELAY)
}

/// Whether a look delivered at `now` is a duplicate of the group's own chain of looks: the
/// record says the next look is due more than a second later.
pub fn look_is_early(record: &GroupRecord, now: i64) -> bool {
    record.next_poll_at.is_some_and(|due| now + 1_000 < due)
}

/// Whether the group's look looks lost: due more than `stranded_after` ago.
pub fn look_is_lost(record: &GroupRecord, now: i64, stranded_after: Duration) -> bool {
    let grace = i64::try_from(stranded_after.as_millis()).unwrap_or(i64::MAX);
    record
        .next_poll_at
        .is_none_or(|due| now > due.saturating_add(grace))
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

/// A provider's limits on one batch input file (OpenAI: 50,000 requests, 200 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    pub max_requests: usize,
    pub max_bytes: u64,
}

impl Default for FileLimits {
    fn default() -> Self {
        Self {
            max_requests: 50_000,
            max_bytes: 200 * 1024 * 1024,
        }
    }
}

/// What a sub-file line adds around the request's body (`custom_id`, `method`, `url`), counted
/// generously so a group never outgrows the provider's byte limit.
pub const LINE_OVERHEAD_BYTES: u64 = 160;

/// One native line as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeLineInfo {
    pub at: LineAt,
    pub provider: String,
    pub model: String,
    /// The request body's size.
    pub body_bytes: u64,
}

/// A group as planning decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedGroup {
    pub provider: String,
    pub model: String,
    pub lines: Vec<LineAt>,
}

/// The batch's native lines, in input order, grouped by (provider, model) in order of first
/// appearance: one group per pair, a further one only when the pair's open group would pass the
/// provider's file limits. The same lines always make the same groups, so group `n` is the same
/// group on every delivery.
pub fn group_lines(
    lines: impl IntoIterator<Item = NativeLineInfo>,
    limits: FileLimits,
) -> Vec<PlannedGroup> {
    let mut groups: Vec<(PlannedGroup, u64)> = Vec::new();
    // The open group of each pair: the one lines still go to.
    let mut open: HashMap<(String, String), usize> = HashMap::new();
    for line in lines {
        let size = line.body_bytes + LINE_OVERHEAD_BYTES;
        let pair = (line.provider, line.model);
        let fits = open.get(&pair).is_some_and(|&g| {
            let (group, bytes) = &groups[g];
            group.lines.len() < limits.max_requests && bytes + size <= limits.max_bytes
        });
        if !fits {
            open.insert(pair.clone(), groups.len());
            groups.push((
                PlannedGroup {
                    provider: pair.0.clone(),
                    model: pair.1.clone(),
                    lines: Vec::new(),
                },
                0,
            ));
        }
        if let Some(&g) = open.get(&pair)
            && let Some((group, bytes)) = groups.get_mut(g)
        {
            group.lines.push(line.at);
            *bytes += size;
        }
    }
    groups.into_iter().map(|(group, _)| group).collect()
}

/// The batch's `request_counts` while it runs: the lines committed by the gateway's chunks plus
/// each native group's counts as its provider last reported them (native lines count there, not
/// in their commits, so none is counted twice). A finished batch shows its final counts alone.
pub fn live_counts(
    status: BatchStatus,
    committed: RequestCounts,
    native: &BTreeMap<u32, RequestCounts>,
) -> RequestCounts {
    if status.is_terminal() {
        return committed;
    }
    native.values().fold(committed, |sum, group| RequestCounts {
        total: sum.total,
        completed: sum.completed + group.completed,
        failed: sum.failed + group.failed,
    })
}

pub(crate) async fn read_json<T: serde::de::DeserializeOwned>(deps: &Deps, key: &str) -> Option<T> {
    // The blob ports do not tell "absent" from "unreadable"; either way the provider is asked
    // before anything is created, so a lost record cannot lead to a second batch.
    let mut stream = deps.blobs.get(key).await.ok()?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        bytes.extend_from_slice(&chunk.ok()?);
    }
    serde_json::from_slice(&bytes).ok()
}

/// Whether a blob is there, by reading its first byte (an empty blob counts as absent; records
/// are JSON, never empty). As with [`read_json`], an unreadable blob counts as absent.
pub(crate) async fn blob_exists(deps: &Deps, key: &str) -> bool {
    deps.blobs
        .get_range(key, 0, 1)
        .await
        .is_ok_and(|first| !first.is_empty())
}

pub(crate) async fn write_json<T: Serialize>(
    deps: &Deps,
    key: &str,
    value: &T,
) -> Result<(), StoreError> {
    let body = serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    crate::batches::process::store_part(deps, key, body).await
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

    fn line(chunk: u32, index: u32, model: &str, bytes: u64) -> NativeLineInfo {
        NativeLineInfo {
            at: LineAt(chunk, index),
            provider: "p".into(),
            model: model.into(),
            body_bytes: bytes,
        }
    }

    #[test]
    fn provider_custom_ids_map_back_to_batch_lines() {
        assert_eq!(
            line_of(&provider_custom_id(LineAt(3, 42))),
            Some(LineAt(3, 42))
        );
        assert_eq!(line_of("caller-id"), None);
        assert_eq!(line_of("line-x"), None);
        assert_eq!(line_of("line-4"), None);
    }

    #[test]
    fn polls_back_off_to_five_minutes() {
        assert_eq!(poll_delay(0), Duration::from_secs(1));
        assert_eq!(poll_delay(3), Duration::from_secs(8));
        assert_eq!(poll_delay(40), MAX_POLL_DELAY);
        assert!(MAX_POLL_DELAY <= crate::deps::MAX_QUEUE_DELAY);
    }

    #[test]
    fn lines_of_every_chunk_make_one_group_per_provider_and_model() {
        let lines = (0..10u32).map(|i| line(i / 4, i % 4, if i % 2 == 0 { "a" } else { "b" }, 10));
        let groups = group_lines(lines, FileLimits::default());
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].model, "a");
        assert_eq!(groups[0].lines.len(), 5);
        assert_eq!(groups[1].lines[0], LineAt(0, 1));
        assert_eq!(groups[1].lines[4], LineAt(2, 1));
    }

    #[test]
    fn a_group_splits_only_at_the_providers_file_limits() {
        let limits = FileLimits {
            max_requests: 3,
            max_bytes: 10_000,
        };
        let groups = group_lines((0..7).map(|i| line(0, i, "a", 10)), limits);
        let sizes: Vec<usize> = groups.iter().map(|g| g.lines.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);

        let limits = FileLimits {
            max_requests: 100,
            max_bytes: 2 * (LINE_OVERHEAD_BYTES + 100),
        };
        let groups = group_lines((0..5).map(|i| line(0, i, "a", 100)), limits);
        let sizes: Vec<usize> = groups.iter().map(|g| g.lines.len()).collect();
        assert_eq!(sizes, vec![2, 2, 1]);
    }

    #[test]
    fn a_full_group_of_one_model_leaves_the_other_models_groups_open() {
        let limits = FileLimits {
            max_requests: 2,
            max_bytes: u64::MAX,
        };
        let models = ["a", "b", "a", "a", "b"];
        let groups = group_lines(
            models
                .iter()
                .enumerate()
                .map(|(i, m)| line(0, i as u32, m, 1)),
            limits,
        );
        let shape: Vec<(&str, usize)> = groups
            .iter()
            .map(|g| (g.model.as_str(), g.lines.len()))
            .collect();
        assert_eq!(shape, vec![("a", 2), ("b", 2), ("a", 1)]);
    }

    #[test]
    fn live_counts_add_the_providers_counts_until_the_batch_ends() {
        let committed = RequestCounts {
            total: 10,
            completed: 3,
            failed: 1,
        };
        let native = BTreeMap::from([(
            0,
            RequestCounts {
                total: 6,
                completed: 2,
                failed: 1,
            },
        )]);
        let live = live_counts(BatchStatus::InProgress, committed, &native);
        assert_eq!((live.total, live.completed, live.failed), (10, 5, 2));
        assert_eq!(
            live_counts(BatchStatus::Completed, committed, &native),
            committed
        );
    }

    #[test]
    fn a_look_before_its_time_is_a_duplicate_and_one_long_past_it_was_lost() {
        let record = GroupRecord {
            provider: "p".into(),
            model: "m".into(),
            key: "k".into(),
            lines: Vec::new(),
            provider_batch_id: None,
            polls: 0,
            next_poll_at: Some(10_000),
            cancel_sent: false,
        };
        assert!(look_is_early(&record, 5_000));
        assert!(!look_is_early(&record, 9_500));
        let stranded = Duration::from_secs(60);
        assert!(!look_is_lost(&record, 60_000, stranded));
        assert!(look_is_lost(&record, 80_000, stranded));
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

//! Batches (OpenAI's Batch API) as Prism runs them: the batch and its state machine, the chunk
//! records processors claim, the parts they commit, and the output lines they write.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batches::input::{BatchError, ChunkPlan};
use crate::clock::Timestamp;
use crate::endpoint::ApiEndpoint;
use crate::ids::{BatchId, FileId, TenantId};
use crate::metadata::Metadata;
use crate::pricing::{Tier, UsageByModel};

pub mod decisions;
pub mod finalize;
pub mod input;
pub mod modes;
pub mod native;
pub mod output;
pub mod plan;
pub mod process;
pub mod service;

pub const COMPLETION_WINDOW: &str = "24h";
/// After a cancel, finalization waits at most this long for processors to let go of their chunks.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10 * 60);
/// After a cancel, finalization waits at most this long for the native groups to collect the
/// lines their provider batches finished: a provider takes up to 10 minutes to end a cancelled
/// batch (OpenAI's documented bound), and one that never does must not hold the batch forever.
pub const NATIVE_CANCEL_GRACE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Validating,
    Failed,
    InProgress,
    Finalizing,
    Completed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Validating,
        BatchStatus::Failed,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelling,
        BatchStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The statuses a batch never leaves: what counts as no longer active.
    pub const TERMINAL: [BatchStatus; 4] = [
        BatchStatus::Failed,
        BatchStatus::Completed,
        BatchStatus::Expired,
        BatchStatus::Cancelled,
    ];

    /// The statuses a cancel moves to `cancelling`.
    pub const CANCELLABLE: [BatchStatus; 2] = [BatchStatus::Validating, BatchStatus::InProgress];

    pub fn is_terminal(self) -> bool {
        Self::TERMINAL.contains(&self)
    }

    /// Whether a cancel moves this status to `cancelling`: the rule `cancel_decision` applies
    /// and the stores' conditional writes render.
    pub fn is_cancellable(self) -> bool {
        Self::CANCELLABLE.contains(&self)
    }
}

/// How a finalized batch ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchOutcome {
    Completed,
    Cancelled,
    Expired,
}

impl BatchOutcome {
    pub fn status(self) -> BatchStatus {
        match self {
            BatchOutcome::Completed => BatchStatus::Completed,
            BatchOutcome::Cancelled => BatchStatus::Cancelled,
            BatchOutcome::Expired => BatchStatus::Expired,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.status().as_str()
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "completed" => Some(BatchOutcome::Completed),
            "cancelled" => Some(BatchOutcome::Cancelled),
            "expired" => Some(BatchOutcome::Expired),
            _ => None,
        }
    }

    /// The error code of lines that never ran, for outcomes that leave some.
    pub fn unrun_line_error(self) -> Option<(&'static str, &'static str)> {
        match self {
            BatchOutcome::Completed => None,
            BatchOutcome::Cancelled => Some((
                "batch_cancelled",
                "This request was not executed because the batch was cancelled.",
            )),
            BatchOutcome::Expired => Some((
                "batch_expired",
                "This request could not be executed before the completion window expired.",
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Token usage summed over the batch's successful lines, in the Batch object's shape.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub cached_tokens: u64,
    pub output_tokens: u64,
    pub reasoning_tokens: u64,
    pub total_tokens: u64,
}

impl Usage {
    pub fn add(&mut self, other: &Usage) {
        self.input_tokens += other.input_tokens;
        self.cached_tokens += other.cached_tokens;
        self.output_tokens += other.output_tokens;
        self.reasoning_tokens += other.reasoning_tokens;
        self.total_tokens += other.total_tokens;
    }

    /// Reads a chat completion's `usage`; missing fields count as zero. (A body whose bill is
    /// wanted too is read once, by `pricing::CompletionHead`.)
    pub fn of_completion(body: &str) -> Usage {
        #[derive(Deserialize)]
        struct Completion {
            #[serde(default)]
            usage: Option<RawUsage>,
        }
        serde_json::from_str::<Completion>(body)
            .ok()
            .and_then(|c| c.usage)
            .map(Usage::from)
            .unwrap_or_default()
    }
}

/// A completion's `usage` as the body has it. Chat completions and embeddings name tokens
/// `prompt`/`completion`; the Responses API names the same counts `input`/`output`.
#[derive(Debug, Deserialize, Default)]
pub(crate) struct RawUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: u64,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<UsageDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<UsageDetails>,
}

#[derive(Debug, Deserialize, Default)]
struct UsageDetails {
    #[serde(default)]
    cached_tokens: u64,
    #[serde(default)]
    reasoning_tokens: u64,
}

impl From<RawUsage> for Usage {
    fn from(raw: RawUsage) -> Usage {
        Usage {
            input_tokens: raw.prompt_tokens,
            cached_tokens: raw.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            output_tokens: raw.completion_tokens,
            reasoning_tokens: raw
                .completion_tokens_details
                .map_or(0, |d| d.reasoning_tokens),
            total_tokens: raw.total_tokens,
        }
    }
}

/// Validation errors: the first ones and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrors {
    pub data: Vec<BatchError>,
    pub total: u64,
}

/// Names a batch everywhere outside the HTTP layer; the owner is part of every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchRef {
    pub tenant: TenantId,
    pub id: BatchId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub id: BatchId,
    pub tenant: TenantId,
    pub input_file_id: FileId,
    pub endpoint: ApiEndpoint,
    pub completion_window: String,
    pub metadata: Option<Metadata>,
    pub output_expires_after: Option<Duration>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl NewBatch {
    pub fn batch_ref(&self) -> BatchRef {
        BatchRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub tenant: TenantId,
    pub input_file_id: FileId,
    pub endpoint: ApiEndpoint,
    pub completion_window: String,
    pub metadata: Option<Metadata>,
    pub output_expires_after: Option<Duration>,
    pub status: BatchStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub in_progress_at: Option<Timestamp>,
    pub finalizing_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub failed_at: Option<Timestamp>,
    pub expired_at: Option<Timestamp>,
    pub cancelling_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    pub counts: RequestCounts,
    pub usage: Usage,
    /// Once finished: `usage` per model and tier, summed from the output file.
    pub usage_by_model: UsageByModel,
    pub errors: Option<BatchErrors>,
    pub output_file_id: Option<FileId>,
    pub error_file_id: Option<FileId>,
    /// The model when every line uses the same one.
    pub model: Option<String>,
    pub chunks: u32,
    pub chunks_done: u32,
    /// While finalizing: the outcome being assembled and the finalizer's lease.
    pub finalize: Option<FinalizeLease>,
}

impl Batch {
    pub fn batch_ref(&self) -> BatchRef {
        BatchRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }

    pub fn from_new(new: &NewBatch) -> Self {
        Batch {
            id: new.id.clone(),
            tenant: new.tenant.clone(),
            input_file_id: new.input_file_id.clone(),
            endpoint: new.endpoint,
            completion_window: new.completion_window.clone(),
            metadata: new.metadata.clone(),
            output_expires_after: new.output_expires_after,
            status: BatchStatus::Validating,
            created_at: new.created_at,
            expires_at: new.expires_at,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            counts: RequestCounts::default(),
            usage: Usage::default(),
            usage_by_model: UsageByModel::default(),
            errors: None,
            output_file_id: None,
            error_file_id: None,
            model: None,
            chunks: 0,
            chunks_done: 0,
            finalize: None,
        }
    }
}

/// The finalizer's hold: the outcome it assembles and the ids its files will get, fixed at the
/// claim so a finalizer that takes over writes the very same files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeLease {
    pub token: String,
    pub expires_at: Timestamp,
    #[serde(with = "outcome_name")]
    pub outcome: BatchOutcome,
    pub output_file_id: FileId,
    pub error_file_id: FileId,
}

mod outcome_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BatchOutcome;

    pub fn serialize<S: Serializer>(outcome: &BatchOutcome, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(outcome.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BatchOutcome, D::Error> {
        let name = String::deserialize(d)?;
        BatchOutcome::parse(&name).ok_or_else(|| serde::de::Error::custom("unknown outcome"))
    }
}

/// Results of consecutive lines of one chunk, committed at once: a blob of output lines, each
/// tagged for the output or the error file (see [`encode_part_line`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    pub key: String,
    pub lines: u32,
    pub completed: u32,
    pub failed: u32,
    pub usage: Usage,
    /// Which of the chunk's request lines (0-based) the part holds, as ranges (`0-3,7`): lines
    /// finish out of order, and a slow one must not hold back the commit of the others.
    pub done: String,
}

impl Part {
    /// Whether the part may hold lines of `target`: the finalizer reads only those parts, so a
    /// batch with no failed line costs no read for its error file. A part whose counts do not
    /// account for its lines (a provider batch's, counted on its group) may hold either.
    pub fn may_hold(&self, target: LineTarget) -> bool {
        let counted = u64::from(self.completed) + u64::from(self.failed) == u64::from(self.lines);
        !counted
            || match target {
                LineTarget::Output => self.completed > 0,
                LineTarget::Error => self.failed > 0,
            }
    }
}

/// Line indexes as compact ranges: `[0, 1, 2, 5]` is `0-2,5`.
pub fn encode_ranges(indexes: &[u32]) -> String {
    let mut sorted = indexes.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

/// Marks the indexes named by `ranges` in `done`; indexes past its end are ignored.
pub fn mark_ranges(ranges: &str, done: &mut [bool]) {
    for range in ranges.split(',').filter(|r| !r.is_empty()) {
        let (start, end) = match range.split_once('-') {
            Some((a, b)) => (a.parse::<usize>(), b.parse::<usize>()),
            None => (range.parse::<usize>(), range.parse::<usize>()),
        };
        if let (Ok(start), Ok(end)) = (start, end) {
            for slot in done.iter_mut().take(end.saturating_add(1)).skip(start) {
                *slot = true;
            }
        }
    }
}

/// A chunk of a batch as its record holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub plan: ChunkPlan,
    /// How many of the chunk's request lines are committed (in `parts`, see [`Part::done`]).
    pub cursor: u32,
    pub parts: Vec<Part>,
    pub done: bool,
    pub lease_token: Option<String>,
    pub lease_expires_at: Option<Timestamp>,
}

impl Chunk {
    /// Which request lines of the chunk its committed parts hold.
    pub fn done_lines(&self) -> Vec<bool> {
        let mut done = vec![false; self.plan.lines as usize];
        for part in &self.parts {
            mark_ranges(&part.done, &mut done);
        }
        done
    }

    /// Which of the chunk's lines a native group runs, as planning recorded it; `None` for a
    /// chunk planned before that was recorded.
    pub fn native_lines(&self) -> Option<Vec<bool>> {
        let ranges = self.plan.native.as_deref()?;
        let mut native = vec![false; self.plan.lines as usize];
        mark_ranges(ranges, &mut native);
        Some(native)
    }

    pub fn new(plan: ChunkPlan) -> Self {
        Chunk {
            plan,
            cursor: 0,
            parts: Vec::new(),
            done: false,
            lease_token: None,
            lease_expires_at: None,
        }
    }

    /// Whether a processor holds it right now.
    pub fn is_claimed(&self, now: Timestamp) -> bool {
        !self.done && self.lease_token.is_some() && self.lease_expires_at.is_some_and(|t| t > now)
    }
}

/// Why a chunk is claimed: the claim's rule depends on it (`decisions::claim_allowed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimPurpose {
    /// To run the chunk's lines (a processor; a native group's submit).
    Run,
    /// To commit lines a provider batch already ran (a native group's collect): allowed while
    /// the batch is cancelling too, since those lines are paid for and a cancel keeps them.
    Collect,
}

/// What a chunk claim found.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkClaim {
    Claimed {
        batch: Box<Batch>,
        chunk: Chunk,
    },
    /// Another processor holds it until then.
    Busy {
        lease_expires_at: Timestamp,
    },
    /// Finished already.
    Done,
    /// The batch takes no more results for the claim's purpose (cancelling for a run, expired,
    /// finalizing, terminal, unknown).
    Closed,
}

/// What a write by a chunk's holder (a part commit or a lease renewal) answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkWrite {
    /// Written; the batch is running: carry on.
    Running,
    /// Written; the batch is being cancelled: commit what has finished, start nothing more,
    /// abort what is in flight and let the chunk go.
    Stopping,
    /// Nothing written: the claim no longer holds, or the batch takes no more results.
    Refused,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchCancelOutcome {
    /// Now `cancelling` (or already `cancelling` / `cancelled`): answered 200.
    Accepted(Batch),
    /// Completed, failed or expired: too late.
    Finished(Batch),
    NotFound,
}

/// Which file a part line goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineTarget {
    Output,
    Error,
}

/// A part line: a tag byte (`o` output, `e` error), the line's index within its chunk, the
/// letter of the tier a successful line bills at ([`Tier::letter`]; absent on error lines and
/// on lines written before tiers were recorded), a space, then the JSON output line.
pub fn encode_part_line(
    target: LineTarget,
    index: u32,
    tier: Option<Tier>,
    json: &str,
    out: &mut Vec<u8>,
) {
    out.push(match target {
        LineTarget::Output => b'o',
        LineTarget::Error => b'e',
    });
    out.extend_from_slice(index.to_string().as_bytes());
    if let Some(tier) = tier {
        out.push(tier.letter());
    }
    out.push(b' ');
    out.extend_from_slice(json.as_bytes());
    out.push(b'\n');
}

/// A decoded part line (see [`encode_part_line`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartLine<'a> {
    pub target: LineTarget,
    pub index: u32,
    pub tier: Option<Tier>,
    pub json: &'a [u8],
}

pub fn decode_part_line(line: &[u8]) -> Option<PartLine<'_>> {
    let (tag, rest) = line.split_first()?;
    let target = match tag {
        b'o' => LineTarget::Output,
        b'e' => LineTarget::Error,
        _ => return None,
    };
    let space = rest.iter().position(|b| *b == b' ')?;
    let head = &rest[..space];
    let (digits, tier) = match head.split_last() {
        Some((last, digits)) if !last.is_ascii_digit() => (digits, Some(Tier::of_letter(*last)?)),
        _ => (head, None),
    };
    let index = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(PartLine {
        target,
        index,
        tier,
        json: &rest[space + 1..],
    })
}

/// Where a batch part is stored: unique per claim (`token`) and sequence, so a stale processor
/// can never overwrite what a newer one committed.
pub fn part_key(batch: &BatchRef, chunk: u32, token: &str, seq: u32) -> String {
    format!(
        "batches/{}/{}/chunks/{chunk:05}/{token}-{seq:05}",
        batch.tenant, batch.id
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_is_read_from_a_completion_and_summed() {
        let body = r#"{"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12,
            "prompt_tokens_details":{"cached_tokens":2},"completion_tokens_details":{"reasoning_tokens":1}}}"#;
        let mut sum = Usage::of_completion(body);
        sum.add(&Usage::of_completion(body));
        assert_eq!(
            sum,
            Usage {
                input_tokens: 10,
                cached_tokens: 4,
                output_tokens: 14,
                reasoning_tokens: 2,
                total_tokens: 24
            }
        );
        assert_eq!(Usage::of_completion("not json"), Usage::default());
    }

    #[test]
    fn usage_is_read_from_a_response_under_the_responses_apis_names() {
        let body = r#"{"usage":{"input_tokens":5,"output_tokens":7,"total_tokens":12,
            "input_tokens_details":{"cached_tokens":2},"output_tokens_details":{"reasoning_tokens":1}}}"#;
        assert_eq!(
            Usage::of_completion(body),
            Usage {
                input_tokens: 5,
                cached_tokens: 2,
                output_tokens: 7,
                reasoning_tokens: 1,
                total_tokens: 12
            }
        );
    }

    #[test]
    fn a_part_is_read_for_a_file_only_when_its_counts_leave_room_for_that_files_lines() {
        let part = |lines, completed, failed| Part {
            key: "k".into(),
            lines,
            completed,
            failed,
            usage: Usage::default(),
            done: String::new(),
        };
        let holds = |p: &Part| {
            (
                p.may_hold(LineTarget::Output),
                p.may_hold(LineTarget::Error),
            )
        };
        assert_eq!(holds(&part(3, 3, 0)), (true, false));
        assert_eq!(holds(&part(3, 0, 3)), (false, true));
        assert_eq!(holds(&part(3, 2, 1)), (true, true));
        // A provider batch's part is counted on its group: either file may need it.
        assert_eq!(holds(&part(3, 0, 0)), (true, true));
    }

    #[test]
    fn part_lines_round_trip_with_their_target_index_and_tier() {
        let mut out = Vec::new();
        encode_part_line(LineTarget::Error, 42, None, r#"{"a":1}"#, &mut out);
        assert_eq!(out, b"e42 {\"a\":1}\n");
        let line = decode_part_line(&out[..out.len() - 1]).unwrap();
        assert_eq!(
            (line.target, line.index, line.tier, line.json),
            (LineTarget::Error, 42, None, &b"{\"a\":1}"[..])
        );
        out.clear();
        encode_part_line(LineTarget::Output, 7, Some(Tier::Batch), "{}", &mut out);
        assert_eq!(out, b"o7b {}\n");
        let line = decode_part_line(b"o7b {}").unwrap();
        assert_eq!((line.index, line.tier), (7, Some(Tier::Batch)));
        assert_eq!(decode_part_line(b"x1 {}"), None);
        assert_eq!(decode_part_line(b"o{}"), None);
        assert_eq!(decode_part_line(b"o1z {}"), None);
    }

    #[test]
    fn line_ranges_round_trip() {
        assert_eq!(encode_ranges(&[5, 0, 1, 2, 9, 10]), "0-2,5,9-10");
        assert_eq!(encode_ranges(&[]), "");
        let mut done = vec![false; 12];
        mark_ranges("0-2,5,9-10,40", &mut done);
        let marked: Vec<usize> = (0..12).filter(|i| done[*i]).collect();
        assert_eq!(marked, [0, 1, 2, 5, 9, 10]);
    }

    #[test]
    fn the_terminal_set_is_exactly_the_terminal_statuses() {
        let listed: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| BatchStatus::TERMINAL.contains(s))
            .collect();
        let terminal: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .collect();
        assert_eq!(listed, terminal);
    }

    #[test]
    fn only_four_statuses_are_terminal() {
        let terminal: Vec<_> = BatchStatus::ALL
            .into_iter()
            .filter(|s| s.is_terminal())
            .map(BatchStatus::as_str)
            .collect();
        assert_eq!(terminal, ["failed", "completed", "expired", "cancelled"]);
        for s in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(s.as_str()), Some(s));
        }
    }
}

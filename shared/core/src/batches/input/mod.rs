//! Batch input files (OpenAI Batch API JSONL): the limits of a file, the errors it can be refused
//! with, and the chunk plan. The [`Planner`] validates every request line in one streaming pass
//! over arbitrary byte chunks and plans the byte-range chunks processors later run;
//! [`request_lines`] reads a planned range back into request lines.

use serde::{Deserialize, Serialize};

mod lines;
mod planner;
mod probe;
#[cfg(test)]
mod tests;

pub use lines::{RequestLine, request_lines};
pub use planner::Planner;

pub const MAX_LINES: usize = 50_000;
pub const MAX_BYTES: u64 = 200 * 1024 * 1024;
pub const MAX_ERRORS: usize = 1_000;
const DEFAULT_LINES_PER_CHUNK: usize = 1_000;

pub(super) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One problem with the input file, shaped like OpenAI's `errors.data[]` entries.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

impl BatchError {
    pub(super) fn file(code: &str, message: String) -> Self {
        BatchError {
            code: code.to_owned(),
            message,
            param: None,
            line: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannerLimits {
    pub max_lines: usize,
    pub max_bytes: u64,
    pub max_errors: usize,
    pub lines_per_chunk: usize,
    /// A chunk also ends once it holds this many bytes: a processor holds a chunk's lines in
    /// memory, so long lines make short chunks and memory stays flat in the file's size.
    pub max_chunk_bytes: u64,
}

/// 256 KiB: with the default 64 chunks at once, a few tens of MiB of input in memory.
pub const DEFAULT_MAX_CHUNK_BYTES: u64 = 256 * 1024;

impl Default for PlannerLimits {
    fn default() -> Self {
        PlannerLimits {
            max_lines: MAX_LINES,
            max_bytes: MAX_BYTES,
            max_errors: MAX_ERRORS,
            lines_per_chunk: DEFAULT_LINES_PER_CHUNK,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
        }
    }
}

/// A run of request lines processed as one unit: the byte range [start, end) of the file
/// (starting at a line start, ending after a line's newline or at EOF), holding `lines` request
/// lines (blank lines inside the range are allowed and skipped by the reader).
///
/// Blank lines between two chunks belong to the later one; trailing blank lines to the last, so
/// the chunks tile the whole file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPlan {
    pub index: u32,
    pub start: u64,
    pub end: u64,
    pub lines: u32,
    /// The lines a native group runs, as ranges of line indexes within the chunk (the format of
    /// `Part::done`; empty: none), recorded at planning so a change of a provider's `batch =`
    /// mid-batch never runs a line twice or never. `None` for a chunk planned before it was
    /// recorded: its lines follow the configuration as it is now.
    #[serde(default)]
    pub native: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlanOutcome {
    Valid {
        total: u64,
        chunks: Vec<ChunkPlan>,
        /// Distinct, in first-seen order.
        models: Vec<String>,
    },
    Invalid {
        errors: Vec<BatchError>,
        total_errors: u64,
    },
}

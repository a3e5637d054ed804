//! Batches (OpenAI's Batch API) as Prism runs them: the batch and its state machine, the chunk
//! records processors claim, the parts they commit, and the output lines they write. The types
//! live in submodules by topic (status, record, chunks, parts, token usage), re-exported here:
//! callers name them `batches::Batch`, `batches::Chunk`, ...

use std::time::Duration;

pub mod decisions;
pub mod finalize;
pub mod input;
pub mod modes;
pub mod native;
pub mod output;
pub mod plan;
pub mod process;
pub mod service;

mod chunks;
mod parts;
mod record;
mod status;
mod tokens;

pub use chunks::{Chunk, ChunkClaim, ChunkWrite, ClaimPurpose, encode_ranges, mark_ranges};
pub use parts::{LineTarget, Part, PartLine, decode_part_line, encode_part_line, part_key};
pub use record::{
    Batch, BatchCancelOutcome, BatchErrors, BatchRef, FinalizeLease, NewBatch, RequestCounts,
};
pub use status::{BatchOutcome, BatchStatus};
pub(crate) use tokens::RawUsage;
pub use tokens::Usage;

pub const COMPLETION_WINDOW: &str = "24h";
/// After a cancel, finalization waits at most this long for processors to let go of their chunks.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10 * 60);
/// After a cancel, finalization waits at most this long for the native groups to collect the
/// lines their provider batches finished: a provider takes up to 10 minutes to end a cancelled
/// batch (OpenAI's documented bound), and one that never does must not hold the batch forever.
pub const NATIVE_CANCEL_GRACE: Duration = Duration::from_secs(15 * 60);

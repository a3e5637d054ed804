//! A batch's chunk records as processors claim them: the chunk, why and with what result it
//! is claimed, what a holder's write answered, and the line ranges its parts mark done.

use super::{Batch, Part};
use crate::batches::input::ChunkPlan;
use crate::clock::Timestamp;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ranges_round_trip() {
        assert_eq!(encode_ranges(&[5, 0, 1, 2, 9, 10]), "0-2,5,9-10");
        assert_eq!(encode_ranges(&[]), "");
        let mut done = vec![false; 12];
        mark_ranges("0-2,5,9-10,40", &mut done);
        let marked: Vec<usize> = (0..12).filter(|i| done[*i]).collect();
        assert_eq!(marked, [0, 1, 2, 5, 9, 10]);
    }
}

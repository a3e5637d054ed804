//! The parts a chunk's holder commits: their record, the tagged lines of their blob, and
//! the keys they are stored under.

use serde::{Deserialize, Serialize};

use super::{BatchRef, Usage};
use crate::pricing::Tier;

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
}

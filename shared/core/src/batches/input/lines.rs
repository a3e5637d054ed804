//! Reading a planned chunk's byte range back into request lines (the processor's side of a
//! validated file), and the byte scanning the planner shares.

use bytes::Bytes;
use serde_json::value::RawValue;

use super::BOM;
use super::probe::{BodyCheck, LineProbe, json_str};

/// One request line of an already-validated file, as a processor runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLine {
    pub custom_id: String,
    pub model: String,
    /// The `body` object, byte for byte as in the file.
    pub body: Bytes,
}

/// Splits the bytes of one chunk's range into request lines (skipping blank lines, stripping CR,
/// and a BOM when `at_file_start`). Returns Err(line index within the chunk, 0-based among
/// request lines) only if a line cannot be parsed (it was validated, so this means the file
/// changed).
pub fn request_lines(range: &[u8], at_file_start: bool) -> Result<Vec<RequestLine>, usize> {
    let mut out = Vec::new();
    let mut rest = range;
    let mut first = at_file_start;
    while !rest.is_empty() {
        let (raw, next) = match find_newline(rest) {
            Some(nl) => (&rest[..nl], &rest[nl + 1..]),
            None => (rest, &rest[rest.len()..]),
        };
        rest = next;
        let mut text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if first {
            text = text.strip_prefix(BOM).unwrap_or(text);
            first = false;
        }
        if is_blank(text) {
            continue;
        }
        match parse_request(text) {
            Some(request) => out.push(request),
            None => return Err(out.len()),
        }
    }
    Ok(out)
}

fn parse_request(text: &[u8]) -> Option<RequestLine> {
    let text = std::str::from_utf8(text).ok()?;
    let probe: LineProbe<'_, &RawValue> = serde_json::from_str(text).ok()?;
    let custom_id = json_str(probe.custom_id?)?.into_owned();
    let body = probe.body?;
    let BodyCheck::Object(fields) = serde_json::from_str::<BodyCheck<'_>>(body.get()).ok()? else {
        return None;
    };
    let model = json_str(fields.model?)?.into_owned();
    Some(RequestLine {
        custom_id,
        model,
        body: Bytes::copy_from_slice(body.get().as_bytes()),
    })
}

pub(super) fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Position of the first `\n`, eight bytes at a time: this runs over every byte of the file
/// before the JSON parser does, so it must cost far less than the parse.
pub(super) fn find_newline(hay: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const NEWLINES: u64 = ONES * b'\n' as u64;
    let mut words = hay.chunks_exact(8);
    let mut at = 0;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(word);
        let x = u64::from_le_bytes(bytes) ^ NEWLINES;
        // Nonzero iff some byte of x is zero, i.e. some byte was '\n'.
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            return word.iter().position(|&b| b == b'\n').map(|i| at + i);
        }
        at += 8;
    }
    words
        .remainder()
        .iter()
        .position(|&b| b == b'\n')
        .map(|i| at + i)
}

//! Batch input files (OpenAI Batch API JSONL): validating every request line in one streaming
//! pass over arbitrary byte chunks, planning the byte-range chunks processors later run, and
//! reading a planned range back into request lines.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use bytes::Bytes;
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const MAX_LINES: usize = 50_000;
pub const MAX_BYTES: u64 = 200 * 1024 * 1024;
pub const MAX_ERRORS: usize = 1_000;
const DEFAULT_LINES_PER_CHUNK: usize = 1_000;

const BOM: &[u8] = b"\xEF\xBB\xBF";
/// Ids and model names are echoed into messages; a hostile line must not balloon the error list.
const ECHO_CHARS: usize = 64;

/// One problem with the input file, shaped like OpenAI's `errors.data[]` entries.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub line: Option<u64>,
}

impl BatchError {
    fn file(code: &str, message: String) -> Self {
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

/// Validates a batch input file fed in chunks of any size and plans its processing chunks.
pub struct Planner<'a> {
    endpoint: &'a str,
    limits: PlannerLimits,
    routes: &'a (dyn Fn(&str) -> bool + Sync),
    /// The partial line left at the end of the last fed chunk; empty exactly at a line start.
    carry: Vec<u8>,
    /// Bytes fed so far: the file offset of the next fed byte.
    offset: u64,
    /// Physical number of the next line, blank lines included.
    line_no: u64,
    requests: u64,
    /// custom_id → line of its first occurrence.
    ids: HashMap<Box<str>, u64>,
    /// Cached predicate answers: the predicate may be costly and models repeat on every line.
    model_routes: HashMap<Box<str>, bool>,
    models: Vec<String>,
    errors: Vec<BatchError>,
    line_errors: u64,
    oversized: bool,
    too_many: bool,
    chunks: Vec<ChunkPlan>,
    chunk_start: u64,
    chunk_lines: u32,
}

impl<'a> Planner<'a> {
    pub fn new(
        endpoint: &'a str,
        limits: PlannerLimits,
        routes: &'a (dyn Fn(&str) -> bool + Sync),
    ) -> Self {
        Planner {
            endpoint,
            limits,
            routes,
            carry: Vec::new(),
            offset: 0,
            line_no: 1,
            requests: 0,
            ids: HashMap::new(),
            model_routes: HashMap::new(),
            models: Vec::new(),
            errors: Vec::new(),
            line_errors: 0,
            oversized: false,
            too_many: false,
            chunks: Vec::new(),
            chunk_start: 0,
            chunk_lines: 0,
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let base = self.offset;
        self.offset = self.offset.saturating_add(chunk.len() as u64);
        if self.oversized {
            return;
        }
        let room = self.limits.max_bytes.saturating_sub(base);
        if chunk.len() as u64 > room {
            // Lines wholly inside the limit are still checked; everything past it is not.
            self.scan(&chunk[..room as usize], base);
            self.oversized = true;
            self.carry = Vec::new();
            return;
        }
        self.scan(chunk, base);
    }

    pub fn finish(mut self) -> PlanOutcome {
        if !self.oversized && !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line, self.offset);
        }
        let mut errors = Vec::new();
        if self.oversized {
            errors.push(BatchError::file(
                "file_too_large",
                format!(
                    "The input file is larger than the maximum of {} bytes.",
                    self.limits.max_bytes
                ),
            ));
        }
        if self.too_many {
            errors.push(BatchError::file(
                "too_many_tasks",
                format!(
                    "The input file has more than {} requests.",
                    self.limits.max_lines
                ),
            ));
        }
        // An oversized file was cut short, so finding no request in it says nothing.
        if self.requests == 0 && !self.oversized {
            errors.push(BatchError::file(
                "empty_file",
                "The input file is empty.".to_owned(),
            ));
        }
        let total_errors = self.line_errors + errors.len() as u64;
        if total_errors > 0 {
            errors.extend(self.errors);
            errors.truncate(self.limits.max_errors);
            return PlanOutcome::Invalid {
                errors,
                total_errors,
            };
        }
        if self.chunk_lines > 0 {
            self.chunks.push(ChunkPlan {
                index: chunk_index(self.chunks.len()),
                start: self.chunk_start,
                end: self.offset,
                lines: self.chunk_lines,
            });
        } else if let Some(last) = self.chunks.last_mut() {
            last.end = self.offset;
        }
        PlanOutcome::Valid {
            total: self.requests,
            chunks: self.chunks,
            models: self.models,
        }
    }

    /// Hands every complete line to `line`, borrowing from `data` unless the line started in an
    /// earlier chunk.
    fn scan(&mut self, data: &[u8], base: u64) {
        let mut pos = 0;
        if !self.carry.is_empty() {
            let Some(nl) = find_newline(data) else {
                self.carry.extend_from_slice(data);
                return;
            };
            self.carry.extend_from_slice(&data[..nl]);
            let mut line = std::mem::take(&mut self.carry);
            self.line(&line, base + nl as u64 + 1);
            line.clear();
            self.carry = line;
            pos = nl + 1;
        }
        while let Some(nl) = find_newline(&data[pos..]) {
            let end = pos + nl;
            self.line(&data[pos..end], base + end as u64 + 1);
            pos = end + 1;
        }
        self.carry.extend_from_slice(&data[pos..]);
    }

    /// `raw` is one physical line without its `\n`; `end` is the file offset just past it.
    fn line(&mut self, raw: &[u8], end: u64) {
        let line_no = self.line_no;
        self.line_no += 1;
        let mut text = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line_no == 1 {
            text = text.strip_prefix(BOM).unwrap_or(text);
        }
        if is_blank(text) {
            return;
        }
        self.requests += 1;
        if self.requests > self.limits.max_lines as u64 {
            self.too_many = true;
        }
        self.validate(text, line_no);
        if self.line_errors == 0 && !self.too_many {
            self.plan(end);
        }
    }

    fn plan(&mut self, end: u64) {
        self.chunk_lines += 1;
        let per_chunk = self.limits.lines_per_chunk.clamp(1, u32::MAX as usize);
        let full = end.saturating_sub(self.chunk_start) >= self.limits.max_chunk_bytes.max(1);
        if self.chunk_lines as usize >= per_chunk || full {
            self.chunks.push(ChunkPlan {
                index: chunk_index(self.chunks.len()),
                start: self.chunk_start,
                end,
                lines: self.chunk_lines,
            });
            self.chunk_start = end;
            self.chunk_lines = 0;
        }
    }

    fn validate(&mut self, text: &[u8], line: u64) {
        // First: serde keeps the last of two equal keys, so the probe below would not see one.
        if let Some(duplicate) = crate::json_strict::find_duplicate_key(text) {
            self.report("duplicate_key", Some(&duplicate.path), line, || {
                duplicate.message()
            });
            return;
        }
        let probe = std::str::from_utf8(text)
            .ok()
            .and_then(|text| serde_json::from_str::<LineProbe<'_, BodyCheck<'_>>>(text).ok());
        let Some(probe) = probe else {
            self.report("invalid_json_line", None, line, || {
                "This line is not parseable as valid JSON.".to_owned()
            });
            return;
        };
        for (key, present) in [
            ("custom_id", probe.custom_id.is_some()),
            ("method", probe.method.is_some()),
            ("url", probe.url.is_some()),
            ("body", probe.body.is_some()),
        ] {
            if !present {
                self.report("missing_required_parameter", Some(key), line, || {
                    format!("Missing required parameter: '{key}'.")
                });
            }
        }
        if let Some(raw) = probe.custom_id {
            match json_str(raw) {
                Some(id) if !id.is_empty() => self.check_unique(&id, line),
                _ => self.report("invalid_request", Some("custom_id"), line, || {
                    "Invalid 'custom_id': expected a non-empty string.".to_owned()
                }),
            }
        }
        if let Some(raw) = probe.method
            && json_str(raw).as_deref() != Some("POST")
        {
            self.report("invalid_request", Some("method"), line, || {
                "Only POST is supported.".to_owned()
            });
        }
        if let Some(raw) = probe.url
            && json_str(raw).as_deref() != Some(self.endpoint)
        {
            self.report("invalid_url", Some("url"), line, || {
                "The URL provided for this request does not match the batch endpoint.".to_owned()
            });
        }
        match probe.body {
            Some(BodyCheck::Object(body)) => self.check_body(&body, line),
            Some(BodyCheck::NotObject) => {
                self.report("invalid_request", Some("body"), line, || {
                    "Invalid 'body': expected a JSON object.".to_owned()
                });
            }
            None => {}
        }
    }

    fn check_unique(&mut self, id: &str, line: u64) {
        if let Some(&first) = self.ids.get(id) {
            self.report("duplicate_custom_id", Some("custom_id"), line, || {
                format!(
                    "The custom_id '{}' is a duplicate of the one on line {first}; \
                     custom_id must be unique for each request in a batch.",
                    echo(id)
                )
            });
        } else {
            self.ids.insert(id.into(), line);
        }
    }

    fn check_body(&mut self, body: &BodyProbe<'_>, line: u64) {
        match body.model.and_then(json_str) {
            Some(model) if !model.is_empty() => {
                if !self.routable(&model) {
                    self.report("model_not_found", Some("body.model"), line, || {
                        format!(
                            "The provided model '{}' is not supported by the Batch API.",
                            echo(&model)
                        )
                    });
                }
            }
            _ => self.report("invalid_request", Some("body.model"), line, || {
                "Model parameter is required.".to_owned()
            }),
        }
        if !body.messages.is_some_and(is_nonempty_array) {
            self.report("invalid_request", Some("body.messages"), line, || {
                "Messages parameter is required.".to_owned()
            });
        }
        if body.stream.is_some_and(|s| s.get() == "true") {
            self.report("streaming_unsupported", Some("body.stream"), line, || {
                "Chat Completions: Streaming is not supported in the Batch API.".to_owned()
            });
        }
    }

    fn routable(&mut self, model: &str) -> bool {
        if let Some(&ok) = self.model_routes.get(model) {
            return ok;
        }
        let ok = (self.routes)(model);
        self.model_routes.insert(model.into(), ok);
        if ok {
            self.models.push(model.to_owned());
        }
        ok
    }

    /// Takes the message lazily: past the cap only the count matters, and a hostile file can
    /// have millions of errors.
    fn report(
        &mut self,
        code: &str,
        param: Option<&str>,
        line: u64,
        message: impl FnOnce() -> String,
    ) {
        self.line_errors += 1;
        if self.errors.len() < self.limits.max_errors {
            self.errors.push(BatchError {
                code: code.to_owned(),
                message: message(),
                param: param.map(str::to_owned),
                line: Some(line),
            });
        }
    }
}

fn chunk_index(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

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

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Position of the first `\n`, eight bytes at a time: this runs over every byte of the file
/// before the JSON parser does, so it must cost far less than the parse.
fn find_newline(hay: &[u8]) -> Option<usize> {
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

/// The string a raw JSON value holds, or None if it is not a string. Borrows unless the string
/// has escapes, so plain ids and models cost no allocation.
fn json_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('\\') {
        serde_json::from_str::<String>(text).ok().map(Cow::Owned)
    } else {
        Some(Cow::Borrowed(inner))
    }
}

fn is_nonempty_array(raw: &RawValue) -> bool {
    raw.get().strip_prefix('[').is_some_and(|rest| {
        !rest
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with(']')
    })
}

fn echo(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// The top-level keys of a request line, borrowed from it. Hand-written rather than derived so
/// a repeated key keeps the last value (as most JSON readers do) instead of failing the line.
struct LineProbe<'a, B> {
    custom_id: Option<&'a RawValue>,
    method: Option<&'a RawValue>,
    url: Option<&'a RawValue>,
    body: Option<B>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum LineKey {
    CustomId,
    Method,
    Url,
    Body,
    #[serde(other)]
    Other,
}

impl<'de, B: Deserialize<'de>> Deserialize<'de> for LineProbe<'de, B> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LineVisitor<B>(PhantomData<fn() -> B>);

        impl<'de, B: Deserialize<'de>> Visitor<'de> for LineVisitor<B> {
            type Value = LineProbe<'de, B>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut probe = LineProbe {
                    custom_id: None,
                    method: None,
                    url: None,
                    body: None,
                };
                while let Some(key) = map.next_key::<LineKey>()? {
                    match key {
                        LineKey::CustomId => probe.custom_id = Some(map.next_value()?),
                        LineKey::Method => probe.method = Some(map.next_value()?),
                        LineKey::Url => probe.url = Some(map.next_value()?),
                        LineKey::Body => probe.body = Some(map.next_value()?),
                        LineKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(probe)
            }
        }

        deserializer.deserialize_map(LineVisitor(PhantomData))
    }
}

/// The body fields validation looks at. Parsed in the same pass as the line, so the bulk of
/// the line (the messages) is scanned once, never copied or built into a tree.
enum BodyCheck<'a> {
    Object(BodyProbe<'a>),
    NotObject,
}

struct BodyProbe<'a> {
    model: Option<&'a RawValue>,
    messages: Option<&'a RawValue>,
    stream: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BodyKey {
    Model,
    Messages,
    Stream,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for BodyCheck<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BodyVisitor)
    }
}

struct BodyVisitor;

impl<'de> Visitor<'de> for BodyVisitor {
    type Value = BodyCheck<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut probe = BodyProbe {
            model: None,
            messages: None,
            stream: None,
        };
        while let Some(key) = map.next_key::<BodyKey>()? {
            match key {
                BodyKey::Model => probe.model = Some(map.next_value()?),
                BodyKey::Messages => probe.messages = Some(map.next_value()?),
                BodyKey::Stream => probe.stream = Some(map.next_value()?),
                BodyKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(BodyCheck::Object(probe))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(BodyCheck::NotObject)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(BodyCheck::NotObject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENDPOINT: &str = "/v1/chat/completions";

    fn line(id: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{{"model":"gpt-4o-mini","messages":[{{"role":"user","content":"hi {id}"}}]}}}}"#
        )
    }

    fn line_with_body(id: &str, body: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"/v1/chat/completions","body":{body}}}"#
        )
    }

    fn plan_with(file: &[u8], limits: PlannerLimits, chunk: usize) -> PlanOutcome {
        let routes = |model: &str| model != "unknown-model";
        let mut planner = Planner::new(ENDPOINT, limits, &routes);
        for piece in file.chunks(chunk.max(1)) {
            planner.feed(piece);
        }
        planner.finish()
    }

    fn plan(file: &[u8]) -> PlanOutcome {
        plan_with(file, PlannerLimits::default(), file.len().max(1))
    }

    fn errors(file: &[u8]) -> Vec<BatchError> {
        match plan(file) {
            PlanOutcome::Invalid { errors, .. } => errors,
            valid => panic!("expected errors, got {valid:?}"),
        }
    }

    /// (code, param, line) triples, the part of an error tests pin down.
    fn codes(file: &[u8]) -> Vec<(String, Option<String>, Option<u64>)> {
        errors(file)
            .into_iter()
            .map(|e| (e.code, e.param, e.line))
            .collect()
    }

    fn at(code: &str, param: Option<&str>, line: u64) -> (String, Option<String>, Option<u64>) {
        (code.to_owned(), param.map(str::to_owned), Some(line))
    }

    fn file_level(code: &str) -> (String, Option<String>, Option<u64>) {
        (code.to_owned(), None, None)
    }

    fn valid(outcome: PlanOutcome) -> (u64, Vec<ChunkPlan>, Vec<String>) {
        match outcome {
            PlanOutcome::Valid {
                total,
                chunks,
                models,
            } => (total, chunks, models),
            invalid => panic!("expected a valid file, got {invalid:?}"),
        }
    }

    fn file_of(lines: &[String]) -> Vec<u8> {
        lines
            .iter()
            .flat_map(|l| format!("{l}\n").into_bytes())
            .collect()
    }

    #[test]
    fn valid_file_is_planned_as_one_chunk_covering_the_whole_file() {
        let file = file_of(&[line("a"), line("b")]);
        let (total, chunks, models) = valid(plan(&file));
        assert_eq!(total, 2);
        assert_eq!(
            chunks,
            vec![ChunkPlan {
                index: 0,
                start: 0,
                end: file.len() as u64,
                lines: 2
            }]
        );
        assert_eq!(models, vec!["gpt-4o-mini".to_owned()]);
    }

    #[test]
    fn models_are_listed_once_each_in_first_seen_order() {
        let body = |m: &str| format!(r#"{{"model":"{m}","messages":[{{"role":"user"}}]}}"#);
        let file = file_of(&[
            line_with_body("a", &body("m2")),
            line_with_body("b", &body("m1")),
            line_with_body("c", &body("m2")),
        ]);
        let (_, _, models) = valid(plan(&file));
        assert_eq!(models, vec!["m2".to_owned(), "m1".to_owned()]);
    }

    #[test]
    fn invalid_json_is_reported_with_its_line_and_no_param() {
        let file = format!("{}\n{{\"custom_id\": \n", line("a"));
        let errors = errors(file.as_bytes());
        assert_eq!(
            errors,
            vec![BatchError {
                code: "invalid_json_line".to_owned(),
                message: "This line is not parseable as valid JSON.".to_owned(),
                param: None,
                line: Some(2),
            }]
        );
    }

    #[test]
    fn a_duplicated_key_is_reported_with_its_path_and_line_like_every_other_request() {
        let body = r#"{"model":"gpt-4o-mini","model":"gpt-4o","messages":[{"role":"user"}]}"#;
        let file = file_of(&[
            line("a"),
            line_with_body("b", body),
            r#"{"custom_id":"c","custom_id":"d","method":"POST","url":"/v1/chat/completions","body":{}}"#.to_owned(),
        ]);
        assert_eq!(
            codes(&file),
            vec![
                at("duplicate_key", Some("body.model"), 2),
                at("duplicate_key", Some("custom_id"), 3),
            ]
        );
    }

    #[test]
    fn json_that_is_not_an_object_is_an_invalid_json_line() {
        let file = format!("[{}]\n\"text\"\n42\n", line("a"));
        assert_eq!(
            codes(file.as_bytes()),
            vec![
                at("invalid_json_line", None, 1),
                at("invalid_json_line", None, 2),
                at("invalid_json_line", None, 3),
            ]
        );
    }

    #[test]
    fn invalid_utf8_in_a_line_is_an_invalid_json_line() {
        let mut file = file_of(&[line("a")]);
        file.extend_from_slice(b"{\"custom_id\":\"\xff\xfe\",\"method\":\"POST\"}\n");
        assert_eq!(codes(&file), vec![at("invalid_json_line", None, 2)]);
    }

    #[test]
    fn each_missing_key_is_reported_as_missing_required_parameter() {
        let errors = errors(b"{\"method\":\"POST\"}\n");
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.code.as_str(), e.param.as_deref(), e.line))
            .collect();
        assert_eq!(
            got,
            vec![
                ("missing_required_parameter", Some("custom_id"), Some(1)),
                ("missing_required_parameter", Some("url"), Some(1)),
                ("missing_required_parameter", Some("body"), Some(1)),
            ]
        );
        assert_eq!(
            errors[0].message,
            "Missing required parameter: 'custom_id'."
        );
    }

    #[test]
    fn custom_id_that_is_not_a_non_empty_string_is_invalid_request() {
        let ok_rest =
            r#""method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[1]}"#;
        let file = format!(
            "{{\"custom_id\":\"\",{ok_rest}}}\n{{\"custom_id\":7,{ok_rest}}}\n{{\"custom_id\":null,{ok_rest}}}\n"
        );
        assert_eq!(
            codes(file.as_bytes()),
            vec![
                at("invalid_request", Some("custom_id"), 1),
                at("invalid_request", Some("custom_id"), 2),
                at("invalid_request", Some("custom_id"), 3),
            ]
        );
    }

    #[test]
    fn duplicate_custom_id_is_reported_with_its_line() {
        let file = file_of(&[line("a"), line("b"), line("a"), line("a")]);
        let errors = errors(&file);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].code, "duplicate_custom_id");
        assert_eq!(errors[0].param.as_deref(), Some("custom_id"));
        assert_eq!(errors[0].line, Some(3));
        assert_eq!(errors[1].line, Some(4));
        assert!(errors[0].message.contains("'a'"), "{}", errors[0].message);
        assert!(
            errors[0].message.contains("line 1"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn escaped_custom_ids_are_compared_decoded() {
        let file = file_of(&[line("ab"), line("a\\u0062")]);
        assert_eq!(
            codes(&file),
            vec![at("duplicate_custom_id", Some("custom_id"), 2)]
        );
    }

    #[test]
    fn method_other_than_post_is_invalid_request() {
        let file = format!("{}\n", line("a").replace("\"POST\"", "\"GET\""));
        let errors = errors(file.as_bytes());
        assert_eq!(
            codes(file.as_bytes()),
            vec![at("invalid_request", Some("method"), 1)]
        );
        assert_eq!(errors[0].message, "Only POST is supported.");
    }

    #[test]
    fn url_other_than_the_batch_endpoint_is_invalid_url() {
        let file = format!(
            "{}\n",
            line("a").replace("/v1/chat/completions", "/v1/embeddings")
        );
        let errors = errors(file.as_bytes());
        assert_eq!(
            codes(file.as_bytes()),
            vec![at("invalid_url", Some("url"), 1)]
        );
        assert_eq!(
            errors[0].message,
            "The URL provided for this request does not match the batch endpoint."
        );
    }

    #[test]
    fn body_that_is_not_an_object_is_invalid_request() {
        let file = file_of(&[
            line_with_body("a", "[1,{\"model\":\"m\"}]"),
            line_with_body("b", "\"text\""),
            line_with_body("c", "null"),
        ]);
        assert_eq!(
            codes(&file),
            vec![
                at("invalid_request", Some("body"), 1),
                at("invalid_request", Some("body"), 2),
                at("invalid_request", Some("body"), 3),
            ]
        );
    }

    #[test]
    fn body_without_a_model_or_messages_is_invalid_request() {
        let file = file_of(&[
            line_with_body("a", r#"{"messages":[{"role":"user"}]}"#),
            line_with_body("b", r#"{"model":"","messages":[{"role":"user"}]}"#),
            line_with_body("c", r#"{"model":"m"}"#),
            line_with_body("d", r#"{"model":"m","messages":[ ]}"#),
            line_with_body("e", r#"{"model":"m","messages":{}}"#),
        ]);
        let errors = errors(&file);
        let got: Vec<_> = errors
            .iter()
            .map(|e| (e.param.as_deref(), e.line, e.message.as_str()))
            .collect();
        let model = "Model parameter is required.";
        let messages = "Messages parameter is required.";
        assert_eq!(
            got,
            vec![
                (Some("body.model"), Some(1), model),
                (Some("body.model"), Some(2), model),
                (Some("body.messages"), Some(3), messages),
                (Some("body.messages"), Some(4), messages),
                (Some("body.messages"), Some(5), messages),
            ]
        );
        assert!(errors.iter().all(|e| e.code == "invalid_request"));
    }

    #[test]
    fn streaming_body_is_streaming_unsupported() {
        let file = file_of(&[
            line_with_body("a", r#"{"model":"m","messages":[1],"stream":false}"#),
            line_with_body("b", r#"{"model":"m","messages":[1],"stream":true}"#),
        ]);
        let errors = errors(&file);
        assert_eq!(
            codes(&file),
            vec![at("streaming_unsupported", Some("body.stream"), 2)]
        );
        assert_eq!(
            errors[0].message,
            "Chat Completions: Streaming is not supported in the Batch API."
        );
    }

    #[test]
    fn model_the_routes_reject_is_model_not_found() {
        let file = file_of(&[
            line("a"),
            line_with_body("b", r#"{"model":"unknown-model","messages":[1]}"#),
        ]);
        let errors = errors(&file);
        assert_eq!(
            codes(&file),
            vec![at("model_not_found", Some("body.model"), 2)]
        );
        assert_eq!(
            errors[0].message,
            "The provided model 'unknown-model' is not supported by the Batch API."
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let file = b"{\"custom_id\":\"a\",\"extra\":{\"x\":[1]},\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"temperature\":0.2,\"messages\":[1]}}\n";
        let (total, _, _) = valid(plan(file));
        assert_eq!(total, 1);
    }

    #[test]
    fn bom_crlf_and_blank_lines_are_tolerated_and_lines_numbered_physically() {
        let mut file = b"\xEF\xBB\xBF".to_vec();
        file.extend_from_slice(
            format!("{}\r\n\r\n  \t\r\n{}\r\n\n", line("a"), line("b")).as_bytes(),
        );
        let (total, chunks, _) = valid(plan(&file));
        assert_eq!(total, 2);
        assert_eq!(chunks.len(), 1);
        assert_eq!((chunks[0].start, chunks[0].end), (0, file.len() as u64));

        file.extend_from_slice(b"{oops}\r\n");
        assert_eq!(codes(&file), vec![at("invalid_json_line", None, 6)]);
    }

    #[test]
    fn a_bom_anywhere_but_the_file_start_is_invalid_json() {
        let file = format!("{}\n\u{feff}{}\n", line("a"), line("b"));
        assert_eq!(
            codes(file.as_bytes()),
            vec![at("invalid_json_line", None, 2)]
        );
    }

    #[test]
    fn last_line_without_a_newline_is_a_normal_line() {
        let file = format!("{}\n{}", line("a"), line("b"));
        let (total, chunks, _) = valid(plan(file.as_bytes()));
        assert_eq!(total, 2);
        assert_eq!(chunks[0].end, file.len() as u64);

        let file = format!("{}\n{}", line("a"), line("a"));
        assert_eq!(
            codes(file.as_bytes()),
            vec![at("duplicate_custom_id", Some("custom_id"), 2)]
        );
    }

    #[test]
    fn feeding_byte_by_byte_in_sevens_or_whole_gives_the_same_outcome() {
        let mut good = b"\xEF\xBB\xBF".to_vec();
        for i in 0..10 {
            good.extend_from_slice(
                format!("{}\r\n", line(&format!("r-\u{e9}\u{1f600}-{i}"))).as_bytes(),
            );
            if i % 3 == 0 {
                good.extend_from_slice(b"\r\n \n");
            }
        }
        let mut bad = good.clone();
        bad.extend_from_slice(b"{\"custom_id\":\"r-x\"}\r\n[1]\n");
        bad.extend_from_slice(line("r-\u{e9}\u{1f600}-3").as_bytes());
        for file in [good, bad] {
            let limits = PlannerLimits {
                lines_per_chunk: 3,
                ..PlannerLimits::default()
            };
            let whole = plan_with(&file, limits.clone(), file.len());
            assert_eq!(plan_with(&file, limits.clone(), 1), whole);
            assert_eq!(plan_with(&file, limits.clone(), 7), whole);
            assert_eq!(plan_with(&file, limits, 64 * 1024), whole);
        }
    }

    #[test]
    fn chunk_plans_cover_every_line_once_and_read_back_in_order() {
        let ids: Vec<String> = (0..10).map(|i| format!("req-{i}")).collect();
        let mut file = b"\xEF\xBB\xBF\n".to_vec();
        for (i, id) in ids.iter().enumerate() {
            let eol = if i % 2 == 0 { "\r\n" } else { "\n" };
            file.extend_from_slice(format!("{}{eol}", line(id)).as_bytes());
            if i % 3 == 2 {
                file.extend_from_slice(b"\r\n   \n");
            }
        }
        file.extend_from_slice(b"\n\n");
        let limits = PlannerLimits {
            lines_per_chunk: 3,
            ..PlannerLimits::default()
        };
        for step in [1, 7, file.len()] {
            let (total, chunks, _) = valid(plan_with(&file, limits.clone(), step));
            assert_eq!(total, 10);
            assert_eq!(
                chunks.iter().map(|c| c.lines).collect::<Vec<_>>(),
                vec![3, 3, 3, 1]
            );
            assert_eq!(chunks[0].start, 0);
            assert_eq!(chunks.last().map(|c| c.end), Some(file.len() as u64));
            let mut read = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                assert_eq!(chunk.index as usize, i);
                if i > 0 {
                    assert_eq!(chunk.start, chunks[i - 1].end);
                }
                let range = &file[chunk.start as usize..chunk.end as usize];
                let lines = request_lines(range, chunk.start == 0).expect("chunk reads back");
                assert_eq!(lines.len(), chunk.lines as usize);
                read.extend(lines);
            }
            let got: Vec<_> = read.iter().map(|r| r.custom_id.clone()).collect();
            assert_eq!(got, ids);
            assert!(read.iter().all(|r| r.model == "gpt-4o-mini"));
            assert_eq!(
                read[0].body,
                Bytes::from_static(
                    br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi req-0"}]}"#
                )
            );
        }
    }

    #[test]
    fn request_lines_decode_escapes_and_report_an_unparseable_line_by_index() {
        let file = format!("\u{feff}{}\r\n\n{}\n", line("a\\u0062"), line("c"));
        let lines = request_lines(file.as_bytes(), true).expect("valid lines");
        assert_eq!(lines[0].custom_id, "ab");
        assert_eq!(lines[1].custom_id, "c");

        let file = format!("{}\n\n{{\"custom_id\":\"x\"}}\n", line("a"));
        assert_eq!(request_lines(file.as_bytes(), false), Err(1));
    }

    #[test]
    fn errors_are_capped_at_max_errors_but_all_counted() {
        let file = "not json\n".repeat(25);
        let limits = PlannerLimits {
            max_errors: 10,
            ..PlannerLimits::default()
        };
        match plan_with(file.as_bytes(), limits, 4) {
            PlanOutcome::Invalid {
                errors,
                total_errors,
            } => {
                assert_eq!(errors.len(), 10);
                assert_eq!(total_errors, 25);
                assert_eq!(errors[9].line, Some(10));
            }
            valid => panic!("expected errors, got {valid:?}"),
        }
    }

    #[test]
    fn more_lines_than_max_lines_is_reported_once_as_too_many_tasks() {
        let ids: Vec<String> = (0..6).map(|i| line(&format!("r{i}"))).collect();
        let limits = PlannerLimits {
            max_lines: 3,
            ..PlannerLimits::default()
        };
        let file = file_of(&ids);
        match plan_with(&file, limits.clone(), 5) {
            PlanOutcome::Invalid {
                errors,
                total_errors,
            } => {
                assert_eq!(total_errors, 1);
                assert_eq!(errors[0].code, "too_many_tasks");
                assert_eq!(errors[0].line, None);
                assert_eq!(
                    errors[0].message,
                    "The input file has more than 3 requests."
                );
            }
            valid => panic!("expected errors, got {valid:?}"),
        }
        let (total, _, _) = valid(plan_with(&file_of(&ids[..3]), limits, 5));
        assert_eq!(total, 3);
    }

    #[test]
    fn more_bytes_than_max_bytes_is_file_too_large() {
        let file = file_of(&[line("a"), line("b"), line("c")]);
        let limits = |max_bytes| PlannerLimits {
            max_bytes,
            ..PlannerLimits::default()
        };
        for step in [1, 7, file.len()] {
            match plan_with(&file, limits(file.len() as u64 - 1), step) {
                PlanOutcome::Invalid {
                    errors,
                    total_errors,
                } => {
                    assert_eq!(total_errors, 1);
                    assert_eq!(errors[0].code, "file_too_large");
                    assert_eq!(errors[0].line, None);
                }
                valid => panic!("expected errors, got {valid:?}"),
            }
            valid(plan_with(&file, limits(file.len() as u64), step));
        }
    }

    #[test]
    fn a_file_without_request_lines_is_empty_file() {
        for file in [
            &b""[..],
            b"\n\r\n  \n",
            b"\xEF\xBB\xBF",
            b"\xEF\xBB\xBF\r\n",
        ] {
            let errors = errors(file);
            assert_eq!(
                errors,
                vec![BatchError {
                    code: "empty_file".to_owned(),
                    message: "The input file is empty.".to_owned(),
                    param: None,
                    line: None,
                }]
            );
        }
        assert_eq!(codes(b"\n\n"), vec![file_level("empty_file")]);
    }

    #[test]
    fn batch_error_serializes_all_four_keys_with_nulls() {
        let error = BatchError::file("empty_file", "The input file is empty.".to_owned());
        let json = serde_json::to_value(&error).expect("serializes");
        assert_eq!(
            json,
            serde_json::json!({
                "code": "empty_file",
                "message": "The input file is empty.",
                "param": null,
                "line": null,
            })
        );
        let back: BatchError = serde_json::from_value(json).expect("deserializes");
        assert_eq!(back, error);
    }

    #[test]
    fn newline_search_finds_the_first_newline_at_any_offset() {
        for len in 0..40 {
            for nl in 0..len {
                let mut hay = vec![b'a'; len];
                hay[nl] = b'\n';
                if nl + 3 < len {
                    hay[nl + 3] = b'\n';
                }
                assert_eq!(find_newline(&hay), Some(nl));
            }
            assert_eq!(find_newline(&vec![0x8a; len]), None);
        }
    }

    #[test]
    fn long_lines_close_chunks_by_bytes_before_lines() {
        let body = "x".repeat(400);
        let file: String = (0..10)
            .map(|i| {
                format!(
                    "{{\"custom_id\":\"c{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{body}\"}}]}}}}\n"
                )
            })
            .collect();
        let routes = |_: &str| true;
        let limits = PlannerLimits {
            lines_per_chunk: 1000,
            max_chunk_bytes: 1000,
            ..PlannerLimits::default()
        };
        let mut planner = Planner::new("/v1/chat/completions", limits, &routes);
        planner.feed(file.as_bytes());
        let PlanOutcome::Valid { chunks, total, .. } = planner.finish() else {
            panic!("expected a valid file");
        };
        assert_eq!(total, 10);
        // Each line is ~520 bytes, so a chunk closes after its second line.
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.lines == 2));
        assert_eq!(chunks.last().map(|c| c.end), Some(file.len() as u64));
    }
}

//! The [`Planner`]: validates a batch input file fed in chunks of any size, line by line in one
//! pass (shape, method, url, unique `custom_id`, body, a routable model, the size and line
//! caps), and cuts it into the byte-range chunks processors run.

use std::borrow::Cow;
use std::collections::HashMap;

use super::lines::{find_newline, is_blank};
use super::probe::{BodyCheck, BodyProbe, LineProbe, json_str};
use super::{BOM, BatchError, ChunkPlan, PlanOutcome, PlannerLimits};
use crate::endpoint::ApiEndpoint;
use crate::requests::{BodyProblem, content_problems};

/// Ids and model names are echoed into messages; a hostile line must not balloon the error list.
const ECHO_CHARS: usize = 64;

/// Validates a batch input file fed in chunks of any size and plans its processing chunks.
pub struct Planner<'a> {
    endpoint: ApiEndpoint,
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
        endpoint: ApiEndpoint,
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
                native: None,
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
                native: None,
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
            && json_str(raw).as_deref() != Some(self.endpoint.path())
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
        // Every batch line names its model, moderations included: a processor routes each line
        // by it (`RequestLine::model`).
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
        for problem in content_problems(self.endpoint, body) {
            let param = format!("body.{}", problem.field());
            let endpoint = self.endpoint;
            self.report("invalid_request", Some(&param), line, || {
                line_message(endpoint, &problem)
            });
        }
        if body.stream.is_some_and(|s| s.get() == "true") {
            let endpoint = self.endpoint;
            self.report("streaming_unsupported", Some("body.stream"), line, || {
                let name = match endpoint {
                    ApiEndpoint::ChatCompletions => "Chat Completions",
                    other => other.path(),
                };
                format!("{name}: Streaming is not supported in the Batch API.")
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

fn echo(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(ECHO_CHARS) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &text[..cut])),
        None => Cow::Borrowed(text),
    }
}

/// A batch line's wording of a body problem: a missing, empty or mistyped field reads as
/// OpenAI's Batch API words it ("Messages parameter is required.").
fn line_message(endpoint: ApiEndpoint, problem: &BodyProblem) -> String {
    match problem {
        BodyProblem::Missing(field)
        | BodyProblem::Empty(field)
        | BodyProblem::WrongType { field, .. } => {
            let mut chars = field.chars();
            let capitalized: String = chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
                .collect();
            format!("{capitalized} parameter is required.")
        }
        other => other.message(endpoint),
    }
}

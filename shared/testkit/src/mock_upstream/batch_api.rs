//! OpenAI's Files (`/v1/files`: upload, retrieve, content, delete) and Batch (`/v1/batches`:
//! create, retrieve, list, cancel) APIs, as far as a provider batch's life needs them. Batches
//! run in memory on read: a batch is `in_progress` until its turnaround has passed, then ends.
//!
//! Batch faults, chosen like the chat faults by the input file's `model` (any `-suffix`):
//! `mock-batchslow-<ms>` (turnaround; default 50 ms), `mock-batchfail-<n>` (every n-th line fails
//! with a 500), `mock-batchexpire-<k>` (the batch expires with only its first k lines run),
//! `mock-batchinvalid` (validation fails), `mock-batchcreatehang` (the create is stored but never
//! answered: the caller dies or times out between the provider creating a batch and learning
//! its id). Output lines come in reverse input order, as a real
//! provider's come in no particular order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::fault::{bare, numbered};
use super::stats::Stats;
use super::wire::{ChatRequest, Reply, request_id};

const DEFAULT_TURNAROUND: Duration = Duration::from_millis(50);

pub(crate) fn router(stats: Arc<Stats>) -> Router {
    let api = Arc::new(BatchApi {
        stats,
        store: Mutex::default(),
    });
    Router::new()
        .route("/v1/files", post(upload_file))
        .route("/v1/files/{id}", get(retrieve_file).delete(delete_file))
        .route("/v1/files/{id}/content", get(file_content))
        .route("/v1/batches", post(create_batch).get(list_batches))
        .route("/v1/batches/{id}", get(retrieve_batch))
        .route("/v1/batches/{id}/cancel", post(cancel_batch))
        .with_state(api)
}

struct BatchApi {
    stats: Arc<Stats>,
    store: Mutex<Store>,
}

impl BatchApi {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Store {
    next_id: u64,
    files: HashMap<String, StoredFile>,
    /// In creation order.
    batches: Vec<MockBatch>,
}

impl Store {
    fn id(&mut self, prefix: &str) -> String {
        self.next_id += 1;
        format!("{prefix}{:012}", self.next_id)
    }

    fn add_file(&mut self, bytes: Bytes, filename: String, purpose: String) -> Value {
        let id = self.id("file-mock");
        let file = StoredFile {
            id: id.clone(),
            bytes,
            filename,
            purpose,
            created_at: unix_seconds(),
        };
        let shown = file.json();
        self.files.insert(id, file);
        shown
    }
}

struct StoredFile {
    id: String,
    bytes: Bytes,
    filename: String,
    purpose: String,
    created_at: u64,
}

impl StoredFile {
    fn json(&self) -> Value {
        json!({
            "id": self.id, "object": "file", "bytes": self.bytes.len(),
            "created_at": self.created_at, "filename": self.filename,
            "purpose": self.purpose, "status": "processed",
        })
    }
}

/// What the input file's model asks the batch to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BatchFault {
    turnaround: Duration,
    fail_every: Option<u64>,
    expire_after: Option<u64>,
    invalid: bool,
    hang_create: bool,
}

impl BatchFault {
    fn from_model(model: &str) -> Self {
        let rest = model.strip_prefix("mock-").unwrap_or("");
        BatchFault {
            turnaround: numbered(rest, "batchslow-")
                .map_or(DEFAULT_TURNAROUND, Duration::from_millis),
            fail_every: numbered(rest, "batchfail-").filter(|n| *n > 0),
            expire_after: numbered(rest, "batchexpire-"),
            invalid: bare(rest, "batchinvalid"),
            hang_create: bare(rest, "batchcreatehang"),
        }
    }
}

#[derive(Debug)]
struct InputLine {
    custom_id: String,
    body: Value,
}

struct MockBatch {
    id: String,
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    metadata: Value,
    created_at: u64,
    started: Instant,
    fault: BatchFault,
    lines: Vec<InputLine>,
    errors: Option<Value>,
    status: &'static str,
    cancel_requested: bool,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    completed: u64,
    failed: u64,
    ended_at: Option<u64>,
}

impl MockBatch {
    fn json(&self) -> Value {
        let at = |status: &str| (self.status == status).then_some(self.ended_at).flatten();
        json!({
            "id": self.id, "object": "batch", "endpoint": self.endpoint,
            "errors": self.errors, "input_file_id": self.input_file_id,
            "completion_window": self.completion_window, "status": self.status,
            "output_file_id": self.output_file_id, "error_file_id": self.error_file_id,
            "created_at": self.created_at, "in_progress_at": self.created_at,
            "expires_at": self.created_at + 86_400,
            "completed_at": at("completed"), "failed_at": at("failed"),
            "expired_at": at("expired"), "cancelled_at": at("cancelled"),
            "request_counts": {
                "total": self.lines.len(), "completed": self.completed, "failed": self.failed,
            },
            "metadata": self.metadata,
        })
    }

    /// Lines the batch has run by now, in proportion to its turnaround.
    fn lines_run_by(&self, now: Instant) -> usize {
        let total = self.lines.len();
        let turnaround = self.fault.turnaround.as_millis().max(1);
        let elapsed = now.duration_since(self.started).as_millis();
        usize::try_from(elapsed.saturating_mul(total as u128) / turnaround)
            .unwrap_or(total)
            .min(total)
    }
}

/// Brings a batch up to date: a cancelled batch keeps the lines run by then; a batch past its
/// turnaround ends (expired: only its first k lines); the files are written once, at its end.
fn advance(store: &mut Store, index: usize) {
    let now = Instant::now();
    let batch = &store.batches[index];
    if !matches!(batch.status, "validating" | "in_progress" | "cancelling") {
        return;
    }
    if batch.errors.is_some() {
        let batch = &mut store.batches[index];
        batch.status = "failed";
        batch.ended_at = Some(unix_seconds());
        return;
    }
    let done_at_turnaround = now.duration_since(batch.started) >= batch.fault.turnaround;
    let (status, run) = if batch.cancel_requested {
        ("cancelled", batch.lines_run_by(now))
    } else if done_at_turnaround {
        match batch.fault.expire_after {
            Some(k) => (
                "expired",
                usize::try_from(k)
                    .unwrap_or(usize::MAX)
                    .min(batch.lines.len()),
            ),
            None => ("completed", batch.lines.len()),
        }
    } else {
        let batch = &mut store.batches[index];
        batch.status = "in_progress";
        batch.completed = batch.lines_run_by(now) as u64;
        return;
    };
    let mut output = Vec::new();
    let mut errors = Vec::new();
    let (mut completed, mut failed) = (0u64, 0u64);
    for (number, line) in batch.lines.iter().enumerate().rev() {
        if number >= run {
            if status == "expired" {
                let error = json!({
                    "id": format!("batch_req_{number}"), "custom_id": line.custom_id,
                    "response": null,
                    "error": {"code": "batch_expired",
                              "message": "This request could not be executed before the completion window expired."},
                });
                push_line(&mut errors, &error);
                failed += 1;
            }
            continue;
        }
        let fails = batch
            .fault
            .fail_every
            .is_some_and(|n| (number as u64 + 1).is_multiple_of(n));
        let (status_code, body) = if fails {
            (
                500,
                json!({"error": {"message": "The server had an error while processing your request.",
                                 "type": "server_error", "param": null, "code": null}}),
            )
        } else {
            (200, run_line(&line.body))
        };
        let result = json!({
            "id": format!("batch_req_{number}"), "custom_id": line.custom_id,
            "response": {"status_code": status_code, "request_id": request_id(), "body": body},
            "error": null,
        });
        if status_code == 200 {
            push_line(&mut output, &result);
            completed += 1;
        } else {
            push_line(&mut errors, &result);
            failed += 1;
        }
    }
    let name = store.batches[index].id.clone();
    let output_file_id = (!output.is_empty()).then(|| {
        let shown = store.add_file(
            Bytes::from(output),
            format!("{name}_output.jsonl"),
            "batch_output".into(),
        );
        shown["id"].as_str().unwrap_or_default().to_owned()
    });
    let error_file_id = (!errors.is_empty()).then(|| {
        let shown = store.add_file(
            Bytes::from(errors),
            format!("{name}_error.jsonl"),
            "batch_output".into(),
        );
        shown["id"].as_str().unwrap_or_default().to_owned()
    });
    let batch = &mut store.batches[index];
    batch.status = status;
    batch.completed = completed;
    batch.failed = failed;
    batch.output_file_id = output_file_id;
    batch.error_file_id = error_file_id;
    batch.ended_at = Some(unix_seconds());
}

fn push_line(out: &mut Vec<u8>, line: &Value) {
    if serde_json::to_writer(&mut *out, line).is_ok() {
        out.push(b'\n');
    }
}

/// A line's chat completion, as the chat endpoint's healthy reply would be.
fn run_line(body: &Value) -> Value {
    let Ok(request) = serde_json::from_value::<ChatRequest>(body.clone()) else {
        return json!({"error": {"message": "unparsable body", "type": "invalid_request_error"}});
    };
    Reply::new(&request.model, &request)
        .completion_json()
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(
            json!({"error": {"message": message, "type": "invalid_request_error",
                              "param": null, "code": null}}),
        ),
    )
        .into_response()
}

fn not_found(what: &str, id: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("No such {what}: '{id}'"))
}

async fn upload_file(State(api): State<Arc<BatchApi>>, mut form: Multipart) -> Response {
    api.stats.record_batch_api("files.create");
    let (mut purpose, mut file) = (None, None);
    loop {
        match form.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or_default().to_owned();
                let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
                let Ok(bytes) = field.bytes().await else {
                    return error(StatusCode::BAD_REQUEST, "the upload broke off");
                };
                match name.as_str() {
                    "purpose" => purpose = Some(String::from_utf8_lossy(&bytes).into_owned()),
                    "file" => file = Some((filename, bytes)),
                    _ => {}
                }
            }
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        }
    }
    let (Some(purpose), Some((filename, bytes))) = (purpose, file) else {
        return error(StatusCode::BAD_REQUEST, "'file' and 'purpose' are required");
    };
    Json(api.store().add_file(bytes, filename, purpose)).into_response()
}

async fn retrieve_file(State(api): State<Arc<BatchApi>>, Path(id): Path<String>) -> Response {
    match api.store().files.get(&id) {
        Some(file) => Json(file.json()).into_response(),
        None => not_found("file", &id),
    }
}

async fn file_content(State(api): State<Arc<BatchApi>>, Path(id): Path<String>) -> Response {
    api.stats.record_batch_api("files.content");
    match api.store().files.get(&id) {
        Some(file) => file.bytes.clone().into_response(),
        None => not_found("file", &id),
    }
}

async fn delete_file(State(api): State<Arc<BatchApi>>, Path(id): Path<String>) -> Response {
    api.stats.record_batch_api("files.delete");
    match api.store().files.remove(&id) {
        Some(_) => Json(json!({"id": id, "object": "file", "deleted": true})).into_response(),
        None => not_found("file", &id),
    }
}

#[derive(Deserialize)]
struct CreateBatch {
    input_file_id: String,
    endpoint: String,
    completion_window: String,
    #[serde(default)]
    metadata: Option<Value>,
}

/// Reads the input file as the provider validates it: every line a POST to the batch's
/// endpoint with a unique `custom_id`, one model in all. `Err` holds the batch's `errors`.
fn validate(bytes: &[u8], endpoint: &str) -> Result<(Vec<InputLine>, String), Value> {
    let mut lines = Vec::new();
    let mut model: Option<String> = None;
    let mut seen = std::collections::HashSet::new();
    let fail = |line: usize, message: String| {
        Err(json!({"object": "list", "data": [
            {"code": "invalid_request", "message": message, "param": null, "line": line}
        ]}))
    };
    for (number, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(value) = serde_json::from_slice::<Value>(raw) else {
            return fail(number + 1, "This line is not valid JSON.".into());
        };
        let custom_id = value["custom_id"].as_str().unwrap_or_default().to_owned();
        if custom_id.is_empty() || !seen.insert(custom_id.clone()) {
            return fail(number + 1, "custom_id is missing or repeated.".into());
        }
        if value["method"] != "POST" || value["url"] != endpoint {
            return fail(number + 1, format!("Every line must POST to {endpoint}."));
        }
        let line_model = value["body"]["model"].as_str().unwrap_or_default();
        match &model {
            None => model = Some(line_model.to_owned()),
            Some(m) if m != line_model => {
                return fail(number + 1, "A batch's lines must all use one model.".into());
            }
            Some(_) => {}
        }
        lines.push(InputLine {
            custom_id,
            body: value["body"].clone(),
        });
    }
    match model {
        Some(model) => Ok((lines, model)),
        None => fail(0, "The input file has no requests.".into()),
    }
}

async fn create_batch(
    State(api): State<Arc<BatchApi>>,
    Json(create): Json<CreateBatch>,
) -> Response {
    api.stats.record_batch_api("batches.create");
    let (shown, hang) = match store_batch(&api, create) {
        Ok(created) => created,
        Err(missing_file) => return not_found("file", &missing_file),
    };
    if hang {
        // Only the client giving up ends this request: hyper then drops this future.
        std::future::pending::<()>().await;
    }
    Json(shown).into_response()
}

/// Validates and stores a new batch; its JSON, and whether the create is to hang. `Err` names
/// an input file that does not exist.
fn store_batch(api: &BatchApi, create: CreateBatch) -> Result<(Value, bool), String> {
    let mut store = api.store();
    let Some(input) = store.files.get(&create.input_file_id) else {
        return Err(create.input_file_id);
    };
    let (lines, fault, errors) = match validate(&input.bytes, &create.endpoint) {
        Ok((lines, model)) => {
            let fault = BatchFault::from_model(&model);
            let errors = fault.invalid.then(|| {
                json!({"object": "list", "data": [{"code": "invalid_request",
                    "message": "The mock refused this batch on purpose.", "param": null, "line": 1}]})
            });
            (lines, fault, errors)
        }
        Err(errors) => (Vec::new(), BatchFault::from_model(""), Some(errors)),
    };
    let id = store.id("batch_mock");
    let batch = MockBatch {
        id,
        input_file_id: create.input_file_id,
        endpoint: create.endpoint,
        completion_window: create.completion_window,
        metadata: create.metadata.unwrap_or(Value::Null),
        created_at: unix_seconds(),
        started: Instant::now(),
        fault,
        lines,
        errors,
        status: "validating",
        cancel_requested: false,
        output_file_id: None,
        error_file_id: None,
        completed: 0,
        failed: 0,
        ended_at: None,
    };
    let shown = batch.json();
    let hang = batch.fault.hang_create;
    store.batches.push(batch);
    Ok((shown, hang))
}

async fn retrieve_batch(State(api): State<Arc<BatchApi>>, Path(id): Path<String>) -> Response {
    api.stats.record_batch_api("batches.retrieve");
    let mut store = api.store();
    let Some(index) = store.batches.iter().position(|b| b.id == id) else {
        return not_found("batch", &id);
    };
    advance(&mut store, index);
    Json(store.batches[index].json()).into_response()
}

async fn cancel_batch(State(api): State<Arc<BatchApi>>, Path(id): Path<String>) -> Response {
    api.stats.record_batch_api("batches.cancel");
    let mut store = api.store();
    let Some(index) = store.batches.iter().position(|b| b.id == id) else {
        return not_found("batch", &id);
    };
    advance(&mut store, index);
    let batch = &mut store.batches[index];
    if matches!(batch.status, "validating" | "in_progress") {
        batch.cancel_requested = true;
        batch.status = "cancelling";
    } else if batch.status != "cancelling" {
        return error(
            StatusCode::CONFLICT,
            &format!("Cannot cancel a batch with status '{}'.", batch.status),
        );
    }
    Json(batch.json()).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

async fn list_batches(
    State(api): State<Arc<BatchApi>>,
    Query(query): Query<ListQuery>,
) -> Response {
    api.stats.record_batch_api("batches.list");
    let mut store = api.store();
    for index in 0..store.batches.len() {
        advance(&mut store, index);
    }
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    // Newest first, like OpenAI's list.
    let newest_first: Vec<&MockBatch> = store.batches.iter().rev().collect();
    let start = match &query.after {
        Some(after) => newest_first
            .iter()
            .position(|b| &b.id == after)
            .map_or(newest_first.len(), |i| i + 1),
        None => 0,
    };
    let page: Vec<Value> = newest_first
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| b.json())
        .collect();
    let has_more = start + page.len() < newest_first.len();
    Json(json!({
        "object": "list",
        "first_id": page.first().map(|b| b["id"].clone()),
        "last_id": page.last().map(|b| b["id"].clone()),
        "has_more": has_more,
        "data": page,
    }))
    .into_response()
}

fn unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_faults_are_read_from_the_model() {
        let fault = BatchFault::from_model("mock-batchfail-3-t1");
        assert_eq!(fault.fail_every, Some(3));
        assert_eq!(fault.turnaround, DEFAULT_TURNAROUND);
        let fault = BatchFault::from_model("mock-batchslow-900");
        assert_eq!(fault.turnaround, Duration::from_millis(900));
        assert!(BatchFault::from_model("mock-batchinvalid-x").invalid);
        assert_eq!(
            BatchFault::from_model("mock-batchexpire-2").expire_after,
            Some(2)
        );
        assert_eq!(BatchFault::from_model("gpt-4o").fail_every, None);
    }

    #[test]
    fn validation_wants_one_model_and_the_batch_endpoint() {
        let good = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}
{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[]}}
"#;
        let (lines, model) = validate(good, "/v1/chat/completions").unwrap();
        assert_eq!((lines.len(), model.as_str()), (2, "m"));
        let two_models =
            br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m"}}
{"custom_id":"b","method":"POST","url":"/v1/chat/completions","body":{"model":"n"}}"#;
        assert_eq!(
            validate(two_models, "/v1/chat/completions").unwrap_err()["data"][0]["line"],
            2
        );
    }
}

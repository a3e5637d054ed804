//! Schemas of what Prism passes through or reads as raw JSON rather than through a Rust type of
//! its own: OpenAI's chat completion request and response (relayed to and from the upstream),
//! the error body, the request bodies the core parses, the multipart forms, and the webhook
//! objects. Shapes follow OpenAI's (`CreateChatCompletionRequest`, `CreateChatCompletionResponse`,
//! `Error`, ...), with only the fields Prism's clients rely on; more are passed through untouched.

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{AnyOfBuilder, Object, Schema};
use utoipa::openapi::{RefOr, Required};
use utoipa::{IntoParams, IntoResponses, PartialSchema, ToSchema};

use super::{defaults, limits, names};
use crate::recurring::RecurringObject;
use crate::wire::JobObject;

/// OpenAI's error body: every 4xx and 5xx Prism itself answers.
#[derive(Serialize, ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorObject,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorObject {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
}

/// What a relayed call answers when the upstream refuses it or does not answer, alike on every
/// forwarded endpoint (a 502 is each endpoint's own: it names what the answer should have been).
#[derive(IntoResponses)]
pub enum UpstreamErrors {
    #[response(
        status = 404,
        description = "The upstream did not find the model or route."
    )]
    NotFound(ErrorResponse),
    #[response(
        status = 429,
        description = "The upstream is rate limiting or out of quota."
    )]
    RateLimited(ErrorResponse),
    #[response(status = 504, description = "The upstream did not answer in time.")]
    TimedOut(ErrorResponse),
}

/// A forwarded endpoint's answer to `x-prism-async: true`.
#[derive(IntoResponses)]
#[response(
    status = 202,
    description = "With `x-prism-async: true`: the stored job, to poll at /v1/async/{id}."
)]
pub struct AsyncJobStored(JobObject<'static>);

/// `GET /health` and `GET /ready`.
#[derive(Serialize, ToSchema)]
pub struct Status {
    #[schema(schema_with = status_values)]
    pub status: String,
}

fn status_values() -> utoipa::openapi::schema::Object {
    names::one_of(["ok", "ready", "unavailable"])
}

/// One message of a chat; content is a string or OpenAI's array of parts.
#[derive(Serialize, ToSchema)]
pub struct ChatMessage {
    #[schema(example = "user")]
    pub role: String,
    #[schema(value_type = Value, example = "Hello")]
    pub content: Option<serde_json::Value>,
}

/// OpenAI's chat completion request. Prism reads `model`, `messages` and `stream`; every other
/// field reaches the upstream untouched.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hello"}]}))]
pub struct ChatCompletionRequest {
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    #[schema(min_items = 1)]
    pub messages: Vec<ChatMessage>,
    /// Answer as server-sent events (`text/event-stream`); refused for async and scheduled jobs.
    pub stream: Option<bool>,
    pub max_completion_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// OpenAI's response request. Prism reads `model`, `stream`, `background` and `store`; every
/// other field reaches the upstream untouched.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-4o-mini", "input": "Hello", "background": true}))]
pub struct CreateResponseRequest {
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// A string, or a list of input items.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// Answer as server-sent events (`text/event-stream`).
    pub stream: Option<bool>,
    /// Keep the request on Prism's job store and answer at once with a `queued` response.
    pub background: Option<bool>,
    /// `false` is refused with `background: true` (a background response is stored).
    pub store: Option<bool>,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// OpenAI's response object: the upstream's answer, or for a background response Prism's record
/// of it (`id` is Prism's).
#[derive(Serialize, ToSchema)]
#[schema(as = Response)]
pub struct ResponseObject {
    pub id: String,
    #[schema(schema_with = names::response)]
    pub object: String,
    pub created_at: i64,
    #[schema(schema_with = names::response_status)]
    pub status: String,
    pub model: String,
    pub background: Option<bool>,
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    #[schema(value_type = Vec<Object>)]
    pub output: Vec<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub usage: Option<serde_json::Value>,
}

/// One server-sent event of a Responses stream: its type (`response.created`,
/// `response.output_text.delta`, ...) and its JSON, which carries `sequence_number`.
#[derive(Serialize, ToSchema)]
pub struct ResponseStreamEvent {
    pub event: String,
    pub data: String,
}

/// `GET /v1/responses/{id}`'s query.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ResponseStreamParams {
    /// `true` answers the recorded events as server-sent events, following new ones until the
    /// response ends.
    #[param(pattern = "^(true|false)$")]
    pub stream: Option<String>,
    /// With `stream=true`: resume after this event's `sequence_number`.
    #[param(minimum = 0)]
    pub starting_after: Option<u64>,
}

/// OpenAI's embeddings request. Prism checks `model`, `input` (at most 2,048 items),
/// `dimensions` and `encoding_format`; every other field reaches the upstream untouched.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "text-embedding-3-small", "input": "Hello"}))]
pub struct CreateEmbeddingRequest {
    pub model: String,
    /// A string, a list of strings, or token arrays.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    #[schema(minimum = 1)]
    pub dimensions: Option<u32>,
    #[schema(pattern = "^(float|base64)$")]
    pub encoding_format: Option<String>,
    pub user: Option<String>,
}

/// OpenAI's legacy completions request. Prism checks `model` and `prompt`.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"}))]
pub struct CreateCompletionRequest {
    pub model: String,
    /// A string, a list of strings, or token arrays.
    #[schema(value_type = Object)]
    pub prompt: serde_json::Value,
    /// Answer as server-sent events (`text/event-stream`); refused for async and scheduled jobs.
    pub stream: Option<bool>,
    pub max_tokens: Option<u32>,
}

/// OpenAI's moderations request. Without `model`, `omni-moderation-latest` routes it.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"input": "some text"}))]
pub struct CreateModerationRequest {
    pub model: Option<String>,
    /// A string, a list of strings, or multimodal input items.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

/// An upstream's 2xx answer for a forwarded endpoint (embeddings list, text completion or
/// moderation), relayed as it came.
#[derive(Serialize, ToSchema)]
pub struct UpstreamAnswer {
    #[schema(value_type = String)]
    pub object: String,
}

/// OpenAI's chat completion, as the upstream answered it.
#[derive(Serialize, ToSchema)]
pub struct ChatCompletion {
    pub id: String,
    #[schema(schema_with = names::chat_completion)]
    pub object: String,
    pub created: i64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Option<CompletionUsage>,
    pub system_fingerprint: Option<String>,
    pub service_tier: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatCompletionMessage,
    pub finish_reason: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<serde_json::Value>,
}

#[derive(Serialize, ToSchema)]
pub struct ChatCompletionMessage {
    pub role: String,
    pub content: Option<String>,
    pub refusal: Option<String>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
}

#[derive(Serialize, ToSchema)]
pub struct CompletionUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// `POST /v1/scheduled`, one run: `scheduled_at` and the request to run then.
#[derive(Serialize, ToSchema)]
pub struct OneTimeScheduleRequest {
    /// RFC 3339 with an offset.
    #[schema(format = DateTime, example = "2026-12-05T09:00:00Z")]
    pub scheduled_at: String,
    /// The endpoint the run calls; `/v1/chat/completions` when absent.
    #[schema(schema_with = names::api_endpoint)]
    pub endpoint: Option<String>,
    /// A non-streaming body for `endpoint` (a chat completion request by default).
    pub request: ChatCompletionRequest,
    pub metadata: Option<BTreeMap<String, String>>,
}

/// `POST /v1/scheduled`, recurring: `schedule` and the request each run makes.
#[derive(Serialize, ToSchema)]
pub struct RecurringScheduleRequest {
    pub schedule: ScheduleRequest,
    /// The endpoint every run calls; `/v1/chat/completions` when absent.
    #[schema(schema_with = names::api_endpoint)]
    pub endpoint: Option<String>,
    /// A non-streaming body for `endpoint` (a chat completion request by default).
    pub request: ChatCompletionRequest,
    pub metadata: Option<BTreeMap<String, String>>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleRequest {
    /// Five fields (minute hour day-of-month month day-of-week).
    #[schema(example = "0 9 * * 1-5")]
    pub cron: String,
    // The description and the default are in the schema, from core's default zone.
    #[schema(schema_with = defaults::schedule_timezone)]
    pub timezone: Option<String>,
    #[schema(format = DateTime)]
    pub start_at: Option<String>,
    #[schema(format = DateTime)]
    pub end_at: Option<String>,
    pub max_runs: Option<u32>,
    #[schema(schema_with = names::overlap_policy)]
    pub overlap: Option<String>,
    #[schema(schema_with = names::catch_up_policy)]
    pub catch_up: Option<String>,
}

/// Either kind of `POST /v1/scheduled` body: exactly one of `scheduled_at` and `schedule`.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum CreateScheduledRequest {
    Once(OneTimeScheduleRequest),
    Recurring(RecurringScheduleRequest),
}

/// What `/v1/scheduled` and `/v1/scheduled/{id}` answer: a one-time job or a recurring schedule
/// (`anyOf`: a cancelled schedule also reads as a job).
pub struct ScheduledObject;

impl PartialSchema for ScheduledObject {
    fn schema() -> RefOr<Schema> {
        AnyOfBuilder::new()
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                JobObject::name(),
            )))
            .item(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                RecurringObject::name(),
            )))
            .into()
    }
}

impl ToSchema for ScheduledObject {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push((JobObject::name().into(), JobObject::schema()));
        <JobObject as ToSchema>::schemas(schemas);
        schemas.push((RecurringObject::name().into(), RecurringObject::schema()));
        <RecurringObject as ToSchema>::schemas(schemas);
    }
}

/// `GET /v1/scheduled`: one-time jobs and recurring schedules, newest first.
#[derive(ToSchema)]
#[schema(as = ScheduledList)]
pub struct ScheduledListObject {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ScheduledObject>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// `POST /v1/files`.
#[derive(Serialize, ToSchema)]
pub struct FileUploadForm {
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    #[schema(schema_with = names::client_purpose)]
    pub purpose: String,
    // Optional but never null: a form field has no null. The description is in the schema.
    #[serde(rename = "expires_after[seconds]")]
    #[schema(schema_with = limits::form_expires_after_seconds, required = false)]
    pub expires_after_seconds: u64,
    #[serde(rename = "expires_after[anchor]")]
    #[schema(schema_with = created_at_anchor, required = false)]
    pub expires_after_anchor: String,
}

fn created_at_anchor() -> utoipa::openapi::schema::Object {
    names::one_of(["created_at"])
}

/// `POST /v1/batches`; other fields are refused.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatchRequest {
    #[schema(example = "file-abc123")]
    pub input_file_id: String,
    #[schema(schema_with = names::batch_endpoint)]
    pub endpoint: String,
    #[schema(schema_with = names::completion_window)]
    pub completion_window: String,
    pub metadata: Option<BTreeMap<String, String>>,
    /// When the output and error files expire.
    pub output_expires_after: Option<ExpiresAfter>,
}

/// `POST /v1/uploads`.
#[derive(Serialize, ToSchema)]
pub struct CreateUploadRequest {
    #[schema(example = "requests.jsonl")]
    pub filename: String,
    #[schema(schema_with = names::client_purpose)]
    pub purpose: String,
    /// The whole file's size, at most the largest file Prism takes.
    #[schema(minimum = 1)]
    pub bytes: u64,
    #[schema(example = "application/jsonl")]
    pub mime_type: String,
    /// When the completed file expires.
    pub expires_after: Option<ExpiresAfter>,
}

#[derive(Serialize, ToSchema)]
pub struct ExpiresAfter {
    #[schema(schema_with = created_at_anchor)]
    pub anchor: String,
    #[schema(schema_with = limits::expires_after_seconds)]
    pub seconds: u64,
}

/// `POST /v1/uploads/{id}/parts`.
#[derive(Serialize, ToSchema)]
pub struct UploadPartForm {
    #[schema(value_type = String, format = Binary)]
    pub data: Vec<u8>,
}

/// `POST /v1/uploads/{id}/complete`: the parts in order, and optionally the whole file's MD5.
#[derive(Serialize, ToSchema)]
pub struct CompleteUploadRequest {
    #[schema(schema_with = limits::part_ids)]
    pub part_ids: Vec<String>,
    #[schema(pattern = "^[0-9a-fA-F]{32}$")]
    pub md5: Option<String>,
}

/// `POST /v1/webhook_endpoints`.
#[derive(Serialize, ToSchema)]
pub struct CreateWebhookEndpointRequest {
    /// An https URL on a public address.
    #[schema(example = "https://example.com/webhooks/prism")]
    pub url: String,
    /// The event types to send; all when absent or empty.
    #[schema(value_type = Option<Vec<String>>)]
    pub events: Option<Vec<String>>,
    pub description: Option<String>,
}

/// A webhook endpoint; `secret` only in the answers of create and rotate.
#[derive(Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: String,
    #[schema(schema_with = names::webhook_endpoint)]
    pub object: String,
    pub url: String,
    #[schema(value_type = Vec<String>)]
    pub events: Vec<String>,
    pub description: Option<String>,
    #[schema(schema_with = names::endpoint_status)]
    pub status: String,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub failing_since: Option<i64>,
    #[schema(required = false)]
    pub secret: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointList {
    #[schema(schema_with = names::list)]
    pub object: String,
    pub data: Vec<WebhookEndpoint>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEndpointDeleted {
    pub id: String,
    #[schema(schema_with = names::webhook_endpoint_deleted)]
    pub object: String,
    pub deleted: bool,
}

/// One delivery attempt of an event to an endpoint.
#[derive(Serialize, ToSchema)]
pub struct WebhookDelivery {
    pub id: String,
    #[schema(schema_with = names::webhook_delivery)]
    pub object: String,
    pub endpoint_id: String,
    pub event_id: String,
    #[schema(schema_with = names::event_kind)]
    pub event_type: String,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub succeeded: bool,
    pub error: Option<String>,
    pub created_at: i64,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookDeliveryList {
    #[schema(schema_with = names::list)]
    pub object: String,
    pub data: Vec<WebhookDelivery>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// OpenAI's webhook event: ids only, never a prompt or a completion.
#[derive(Serialize, ToSchema)]
#[schema(as = WebhookEvent)]
pub struct WebhookEventObject {
    pub id: String,
    #[schema(schema_with = names::event)]
    pub object: String,
    #[serde(rename = "type")]
    #[schema(schema_with = names::event_kind)]
    pub kind: String,
    pub created_at: i64,
    pub data: WebhookEventData,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookEventData {
    pub id: String,
}

/// A path's `{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct IdParam {
    /// The object's id.
    pub id: String,
}

/// `/v1/async`, `/v1/scheduled` and a schedule's runs: newest first.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct JobListParams {
    #[param(schema_with = limits::list_limit)]
    pub limit: Option<u32>,
    /// The last id of the previous page.
    pub after: Option<String>,
    #[param(schema_with = names::job_status)]
    pub status: Option<String>,
}

/// `/v1/files`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FileListParams {
    #[param(schema_with = names::file_purpose)]
    pub purpose: Option<String>,
    #[param(schema_with = limits::file_list_limit)]
    pub limit: Option<u32>,
    pub after: Option<String>,
    #[param(schema_with = names::sort_order)]
    pub order: Option<String>,
}

/// `/v1/batches`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchListParams {
    #[param(schema_with = limits::list_limit)]
    pub limit: Option<u32>,
    pub after: Option<String>,
}

/// `GET /v1/usage`'s range: Unix seconds, by when work finished; usage is counted per UTC day,
/// so every day the range touches counts whole.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The range's start (inclusive).
    pub start_time: i64,
    /// The range's end (exclusive); default now.
    pub end_time: Option<i64>,
}

/// `GET /v1/scheduled`: newest first, across both kinds.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScheduledListParams {
    #[param(schema_with = limits::list_limit)]
    pub limit: Option<u32>,
    /// The last id of the previous page.
    pub after: Option<String>,
    /// A one-time job's or a recurring schedule's status (`cancelled` matches both).
    pub status: Option<String>,
    /// `once` or `recurring`: one kind only.
    #[param(rename = "type", pattern = "^(once|recurring)$")]
    pub kind: Option<String>,
}

/// `DELETE /v1/scheduled/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CancelScheduledParams {
    /// A recurring schedule only: also cancel its pending and running runs.
    pub cancel_running: Option<bool>,
}

/// A webhook endpoint's deliveries.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveryListParams {
    #[param(schema_with = limits::delivery_list_limit)]
    pub limit: Option<u32>,
}

/// `POST /v1/chat/completions`'s headers. Written out rather than derived: a derived parameter
/// with `schema_with` loses its description.
pub struct CompletionHeaders;

impl IntoParams for CompletionHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            optional_header(
                "x-prism-async",
                "`true` stores the request as an async job and answers 202 with it; `false` or \
                 absent answers synchronously. Case-insensitive; sent at most once."
                    .into(),
                names::boolean_header(),
            ),
            optional_header(
                "Idempotency-Key",
                format!(
                    "With `x-prism-async: true`: {}; a retry with the same key and body answers \
                     the job the first request made.",
                    limits::idempotency_key_length()
                ),
                limits::idempotency_key(),
            ),
        ]
    }
}

/// `POST /v1/scheduled`'s header.
pub struct ScheduledHeaders;

impl IntoParams for ScheduledHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![optional_header(
            "Idempotency-Key",
            format!(
                "{}; a retry with the same key and body answers the job or recurring schedule \
                 the first request made.",
                limits::idempotency_key_length()
            ),
            limits::idempotency_key(),
        )]
    }
}

fn optional_header(name: &str, description: String, schema: Object) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .description(Some(description))
        .required(Required::False)
        .schema(Some(schema))
        .build()
}

//! What Prism reads of a request to any forwarded endpoint, and each endpoint's rules for it:
//! what is required, what may stream, the size caps. The sync relay, async and scheduled jobs
//! and batch lines all ask here, so an endpoint's rules are written once.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::endpoint::ApiEndpoint;
use crate::error::ServiceError;

/// The most inputs one embeddings request may carry, as at OpenAI.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// The model a moderation request without one is routed as: OpenAI's own default.
pub const DEFAULT_MODERATION_MODEL: &str = "omni-moderation-latest";

/// What routing and the modes need of a valid request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    pub model: String,
    pub stream: bool,
}

/// The raw top-level fields the rules look at; every other field is forwarded unread.
#[derive(Debug, Default, Clone, Copy)]
pub struct BodyFields<'a> {
    pub model: Option<&'a RawValue>,
    pub messages: Option<&'a RawValue>,
    pub prompt: Option<&'a RawValue>,
    pub input: Option<&'a RawValue>,
    pub stream: Option<&'a RawValue>,
    pub dimensions: Option<&'a RawValue>,
    pub encoding_format: Option<&'a RawValue>,
    pub background: Option<&'a RawValue>,
}

/// What is wrong with a body, for each caller to word in its own shape (a 400, a batch line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyProblem {
    Missing(&'static str),
    Empty(&'static str),
    WrongType {
        field: &'static str,
        expected: &'static str,
    },
    InvalidValue {
        field: &'static str,
        message: String,
    },
    /// `stream: true` toward an endpoint that does not stream.
    StreamUnsupported,
}

impl BodyProblem {
    pub fn field(&self) -> &'static str {
        match self {
            Self::Missing(field) | Self::Empty(field) => field,
            Self::WrongType { field, .. } | Self::InvalidValue { field, .. } => field,
            Self::StreamUnsupported => "stream",
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "missing_required_parameter",
            Self::Empty(_) => "empty_array",
            Self::WrongType { .. } => "invalid_type",
            Self::InvalidValue { .. } => "invalid_value",
            Self::StreamUnsupported => "streaming_unsupported",
        }
    }

    pub fn message(&self, endpoint: ApiEndpoint) -> String {
        match self {
            Self::Missing(field) => format!("Missing required parameter: '{field}'."),
            Self::Empty(field) => {
                format!("Invalid '{field}': empty array. Expected an array with minimum length 1.")
            }
            Self::WrongType { field, expected } => {
                format!("Invalid type for '{field}': expected {expected}.")
            }
            Self::InvalidValue { message, .. } => message.clone(),
            Self::StreamUnsupported => format!("{endpoint} does not support 'stream'."),
        }
    }

    pub fn into_error(self, endpoint: ApiEndpoint) -> ServiceError {
        ServiceError::invalid(
            self.message(endpoint),
            Some(self.field()),
            Some(self.code()),
        )
    }
}

/// The model a body routes to, or why it has none.
pub fn model_of(endpoint: ApiEndpoint, fields: &BodyFields<'_>) -> Result<String, BodyProblem> {
    match fields
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(model)) if !model.is_empty() => Ok(model),
        Some(_) => Err(BodyProblem::WrongType {
            field: "model",
            expected: "a non-empty string",
        }),
        None if endpoint == ApiEndpoint::Moderations => Ok(DEFAULT_MODERATION_MODEL.to_owned()),
        None => Err(BodyProblem::Missing("model")),
    }
}

/// Whether the body asks to stream, or why `stream` is wrong.
pub fn stream_of(endpoint: ApiEndpoint, fields: &BodyFields<'_>) -> Result<bool, BodyProblem> {
    let stream = match fields.stream.map(RawValue::get) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(BodyProblem::WrongType {
                field: "stream",
                expected: "a boolean",
            });
        }
    };
    if stream && !endpoint.streams() {
        return Err(BodyProblem::StreamUnsupported);
    }
    Ok(stream)
}

/// Every problem with the endpoint's own fields (`model` and `stream` aside), in field order.
pub fn content_problems(endpoint: ApiEndpoint, fields: &BodyFields<'_>) -> Vec<BodyProblem> {
    let mut problems = Vec::new();
    match endpoint {
        ApiEndpoint::ChatCompletions => {
            problems.extend(nonempty_array(
                fields.messages,
                "messages",
                "an array of message objects",
            ));
        }
        ApiEndpoint::Completions => problems.extend(prompt_problem(fields.prompt)),
        ApiEndpoint::Embeddings => {
            problems.extend(input_problem(fields.input, Some(MAX_EMBEDDING_INPUTS)));
            problems.extend(dimensions_problem(fields.dimensions));
            problems.extend(encoding_problem(fields.encoding_format));
        }
        ApiEndpoint::Moderations => problems.extend(input_problem(fields.input, None)),
        // The sync relay and background mode read Responses bodies in `crate::responses`; here
        // the body is a job's or a batch line's, which is durable already.
        ApiEndpoint::Responses => problems.extend(background_problem(fields.background)),
    }
    problems
}

/// Validates a body toward `endpoint` without building a tree of it: the body is forwarded as
/// the client sent it.
pub fn summarize_request(
    endpoint: ApiEndpoint,
    body: &[u8],
) -> Result<RequestSummary, ServiceError> {
    let probe = parse_object(body)?;
    let fields = probe.fields();
    let model = model_of(endpoint, &fields).map_err(|p| p.into_error(endpoint))?;
    if let Some(problem) = content_problems(endpoint, &fields).into_iter().next() {
        return Err(problem.into_error(endpoint));
    }
    let stream = stream_of(endpoint, &fields).map_err(|p| p.into_error(endpoint))?;
    Ok(RequestSummary { model, stream })
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(borrow, default)]
    dimensions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    encoding_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    background: Option<&'a RawValue>,
}

impl<'a> Probe<'a> {
    fn fields(&self) -> BodyFields<'a> {
        BodyFields {
            model: self.model,
            messages: self.messages,
            prompt: self.prompt,
            input: self.input,
            stream: self.stream,
            dimensions: self.dimensions,
            encoding_format: self.encoding_format,
            background: self.background,
        }
    }
}

fn parse_object(body: &[u8]) -> Result<Probe<'_>, ServiceError> {
    // serde would also read a struct from a JSON array; a body must be an object.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // JSON is UTF-8, and serde_json skips the fields it ignores without checking theirs: without
    // this, invalid UTF-8 in an unread field would be accepted and sent on.
    let Ok(parsed) = std::str::from_utf8(body).map(serde_json::from_str::<Probe<'_>>) else {
        return Err(ServiceError::invalid(
            "We could not parse the JSON body of your request: it is not valid UTF-8.",
            None,
            Some("invalid_json"),
        ));
    };
    match parsed {
        Ok(probe) if is_object => Ok(probe),
        Ok(_) => Err(not_an_object()),
        Err(e) if e.is_data() => Err(not_an_object()),
        Err(_) => Err(ServiceError::invalid(
            "We could not parse the JSON body of your request.",
            None,
            Some("invalid_json"),
        )),
    }
}

fn not_an_object() -> ServiceError {
    ServiceError::invalid(
        "The request body must be a JSON object.",
        None,
        Some("invalid_json"),
    )
}

/// Whether a raw value is an array with at least one item. A `RawValue` is always valid JSON, so
/// its first bytes tell: the items (a chat's messages, a batch line's bulk) are never rescanned.
fn array_items(raw: &RawValue) -> Option<bool> {
    let rest = raw.get().strip_prefix('[')?;
    Some(
        !rest
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with(']'),
    )
}

fn nonempty_array(
    raw: Option<&RawValue>,
    field: &'static str,
    expected: &'static str,
) -> Option<BodyProblem> {
    match raw.map(array_items) {
        Some(Some(true)) => None,
        Some(Some(false)) => Some(BodyProblem::Empty(field)),
        Some(None) => Some(BodyProblem::WrongType { field, expected }),
        None => Some(BodyProblem::Missing(field)),
    }
}

/// A completion's `prompt`: a string, or a non-empty array (of strings or token ids).
fn prompt_problem(raw: Option<&RawValue>) -> Option<BodyProblem> {
    let Some(raw) = raw else {
        return Some(BodyProblem::Missing("prompt"));
    };
    if raw.get().starts_with('"') {
        return None;
    }
    nonempty_array(Some(raw), "prompt", "a string or an array")
}

/// An embedding's or a moderation's `input`: a non-empty string, or a non-empty array of at most
/// `cap` items (only counted when there is a cap).
fn input_problem(raw: Option<&RawValue>, cap: Option<usize>) -> Option<BodyProblem> {
    let Some(raw) = raw else {
        return Some(BodyProblem::Missing("input"));
    };
    let text = raw.get();
    if text.starts_with('"') {
        return (text == "\"\"").then(|| BodyProblem::InvalidValue {
            field: "input",
            message: "Invalid 'input': empty string. Expected a non-empty string.".to_owned(),
        });
    }
    match array_items(raw) {
        Some(false) => Some(BodyProblem::Empty("input")),
        Some(true) => {
            let cap = cap?;
            let items = serde_json::from_str::<Vec<&RawValue>>(text).map_or(0, |l| l.len());
            (items > cap).then(|| BodyProblem::InvalidValue {
                field: "input",
                message: format!(
                    "Invalid 'input': array too long. Expected an array with maximum length {cap}, but got an array with length {items} instead."
                ),
            })
        }
        None => Some(BodyProblem::WrongType {
            field: "input",
            expected: "a string or an array",
        }),
    }
}

fn dimensions_problem(raw: Option<&RawValue>) -> Option<BodyProblem> {
    let raw = raw.filter(|raw| raw.get() != "null")?;
    match serde_json::from_str::<u64>(raw.get()) {
        Ok(n) if n >= 1 => None,
        _ => Some(BodyProblem::InvalidValue {
            field: "dimensions",
            message: "Invalid 'dimensions': expected an integer of at least 1.".to_owned(),
        }),
    }
}

fn encoding_problem(raw: Option<&RawValue>) -> Option<BodyProblem> {
    let raw = raw.filter(|raw| raw.get() != "null")?;
    match raw.get() {
        "\"float\"" | "\"base64\"" => None,
        _ => Some(BodyProblem::InvalidValue {
            field: "encoding_format",
            message: "Invalid 'encoding_format': expected 'float' or 'base64'.".to_owned(),
        }),
    }
}

/// A Responses body in an async or scheduled job or a batch line may not ask for background
/// mode: Prism already keeps the request as a durable job, and a provider-side background
/// response would leave the job holding a `queued` response instead of the answer.
fn background_problem(raw: Option<&RawValue>) -> Option<BodyProblem> {
    match raw.map(RawValue::get) {
        None | Some("null") | Some("false") => None,
        Some("true") => Some(BodyProblem::InvalidValue {
            field: "background",
            message: "'background' does not apply here: an async, scheduled or batch request is \
                      already a durable job. Remove 'background', or send the request to \
                      POST /v1/responses without 'x-prism-async' for a background response."
                .to_owned(),
        }),
        Some(_) => Some(BodyProblem::WrongType {
            field: "background",
            expected: "a boolean",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(endpoint: ApiEndpoint, body: &str) -> Option<String> {
        match summarize_request(endpoint, body.as_bytes()) {
            Err(ServiceError::InvalidRequest { code, .. }) => code,
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    #[test]
    fn embeddings_need_a_model_and_an_input_within_the_cap() {
        let ok = summarize_request(
            ApiEndpoint::Embeddings,
            br#"{"model":"e","input":["a","b"],"dimensions":8,"encoding_format":"base64"}"#,
        )
        .unwrap();
        assert_eq!(ok.model, "e");
        assert!(!ok.stream);
        let e = ApiEndpoint::Embeddings;
        assert_eq!(
            code_of(e, r#"{"model":"e"}"#).as_deref(),
            Some("missing_required_parameter")
        );
        assert_eq!(
            code_of(e, r#"{"model":"e","input":[]}"#).as_deref(),
            Some("empty_array")
        );
        assert_eq!(
            code_of(e, r#"{"model":"e","input":""}"#).as_deref(),
            Some("invalid_value")
        );
        assert_eq!(
            code_of(e, r#"{"model":"e","input":3}"#).as_deref(),
            Some("invalid_type")
        );
        let too_many = format!(r#"{{"model":"e","input":[{}]}}"#, vec!["1"; 2049].join(","));
        assert_eq!(code_of(e, &too_many).as_deref(), Some("invalid_value"));
        assert_eq!(
            code_of(e, r#"{"model":"e","input":"a","dimensions":0}"#).as_deref(),
            Some("invalid_value")
        );
        assert_eq!(
            code_of(e, r#"{"model":"e","input":"a","encoding_format":"hex"}"#).as_deref(),
            Some("invalid_value")
        );
        assert_eq!(
            code_of(e, r#"{"model":"e","input":"a","stream":true}"#).as_deref(),
            Some("streaming_unsupported")
        );
    }

    #[test]
    fn completions_need_a_prompt_and_may_stream() {
        let c = ApiEndpoint::Completions;
        let s = summarize_request(c, br#"{"model":"m","prompt":"hi","stream":true}"#).unwrap();
        assert!(s.stream);
        summarize_request(c, br#"{"model":"m","prompt":[1,2]}"#).unwrap();
        assert_eq!(
            code_of(c, r#"{"model":"m","prompt":[]}"#).as_deref(),
            Some("empty_array")
        );
        assert_eq!(
            code_of(c, r#"{"model":"m","prompt":4}"#).as_deref(),
            Some("invalid_type")
        );
    }

    #[test]
    fn a_moderation_without_a_model_routes_as_openais_default() {
        let s = summarize_request(ApiEndpoint::Moderations, br#"{"input":"hello"}"#).unwrap();
        assert_eq!(s.model, DEFAULT_MODERATION_MODEL);
        assert_eq!(
            code_of(ApiEndpoint::Moderations, r#"{"model":"m"}"#).as_deref(),
            Some("missing_required_parameter")
        );
    }

    #[test]
    fn a_chat_body_is_not_a_valid_embeddings_body() {
        let chat = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;
        summarize_request(ApiEndpoint::ChatCompletions, chat.as_bytes()).unwrap();
        assert_eq!(
            code_of(ApiEndpoint::Embeddings, chat).as_deref(),
            Some("missing_required_parameter")
        );
    }

    #[test]
    fn a_responses_job_reads_like_a_response_but_may_not_ask_for_background_mode() {
        let r = ApiEndpoint::Responses;
        let ok = summarize_request(r, br#"{"model":"m","input":"hi","background":false}"#).unwrap();
        assert_eq!(ok.model, "m");
        assert_eq!(
            code_of(r, r#"{"model":"m","input":"hi","background":true}"#).as_deref(),
            Some("invalid_value")
        );
        assert_eq!(
            code_of(r, r#"{"model":"m","background":"yes"}"#).as_deref(),
            Some("invalid_type")
        );
        assert_eq!(
            code_of(r, r#"{"input":"hi"}"#).as_deref(),
            Some("missing_required_parameter")
        );
    }
}

//! The HTTP surface: routes, the fault dispatch every endpoint shares, and paced or deliberately
//! broken response bodies.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;

use super::endpoints::{self, EndpointRequest};
use super::fault::{Fault, RetryHint};
use super::responses::{self, ResponsesAnswer};
use super::stats::{CallGuard, Stats};
use super::wire::{ApiError, ChatRequest, EventStream, Reply, request_id};

const APPLICATION_JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("retry-after-ms");

/// Bytes per piece of a `mock-drip` JSON body: small enough that a reply takes many pauses.
const DRIP_PIECE_BYTES: usize = 16;

/// Pause before a deliberate cut: hyper would otherwise hit the error before flushing what came
/// before it, and the client would see a refused response instead of a broken body.
const CUT_GRACE: Duration = Duration::from_millis(20);

/// Large enough for long-context tests; axum's 2 MB default would turn them into 413s.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn router(stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/moderations", post(moderations))
        .route("/v1/responses", post(responses::create_response))
        .route("/v1/models", get(list_models))
        .route("/_stats", get(report_stats))
        .route("/_reset", post(reset_stats))
        .with_state(Arc::clone(&stats))
        .merge(super::batch_api::router(stats))
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
}

/// Encoding one of the mock's own replies failed; answered as a 500 so a test sees it.
#[derive(Debug, thiserror::Error)]
#[error("the mock upstream could not encode its reply: {0}")]
struct EncodeError(#[from] serde_json::Error);

impl IntoResponse for EncodeError {
    fn into_response(self) -> Response {
        let body = r#"{"error":{"message":"The mock upstream could not encode its reply.","type":"server_error","param":null,"code":null}}"#;
        with_content_type(
            StatusCode::INTERNAL_SERVER_ERROR,
            APPLICATION_JSON,
            Body::from(body),
        )
    }
}

/// How a reply leaves the handler: whole, or as a body that outlives it and so must carry the
/// request's [`CallGuard`] along.
enum Outcome {
    Whole(Response),
    Paced(Paced),
}

/// A body delivered piece by piece, with a pause between pieces, optionally ending in a cut.
struct Paced {
    content_type: &'static str,
    /// Declared up front; larger than the pieces when the body is meant to come up short.
    content_length: Option<usize>,
    pieces: Vec<Bytes>,
    pause: Duration,
    ending: Ending,
}

#[derive(Clone, Copy)]
enum Ending {
    Complete,
    Cut,
}

/// The body stream failed on purpose to simulate a connection lost mid-response.
#[derive(Debug, thiserror::Error)]
#[error("the mock upstream cut the connection on purpose")]
struct DeliberateCut;

/// What a healthy reply is made of: a chat request builds its own, the other endpoints hand
/// over their JSON (and its event stream when one was asked for).
pub(super) enum Answer<'a> {
    Chat(&'a ChatRequest),
    Responses(&'a ResponsesAnswer),
    Prepared {
        json: Bytes,
        events: Option<EventStream>,
    },
}

impl Answer<'_> {
    fn json(&self, model: &str) -> Result<Bytes, EncodeError> {
        match self {
            Answer::Chat(request) => Ok(Reply::new(model, request).completion_json()?),
            Answer::Responses(answer) => Ok(answer.whole()?),
            Answer::Prepared { json, .. } => Ok(json.clone()),
        }
    }

    /// The event stream, when the request asked to stream.
    fn events(&self, model: &str) -> Result<Option<EventStream>, EncodeError> {
        match self {
            Answer::Chat(request) if request.is_stream() => {
                Ok(Some(Reply::new(model, request).event_stream()?))
            }
            Answer::Chat(_) => Ok(None),
            Answer::Responses(answer) if answer.is_stream() => Ok(Some(answer.events()?)),
            Answer::Responses(_) => Ok(None),
            Answer::Prepared { events, .. } => Ok(events.clone()),
        }
    }

    /// Whether the caller asked for the flex tier.
    fn is_flex(&self) -> bool {
        matches!(self, Answer::Chat(request) if request.is_flex())
    }
}

async fn chat_completions(State(stats): State<Arc<Stats>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ChatRequest>(&body) {
        Ok(mut request) => {
            let model = std::mem::take(&mut request.model);
            if request.is_flex() {
                stats.record_flex(&model);
            }
            serve(&stats, model, |_| Answer::Chat(&request)).await
        }
        Err(err) => refuse(&stats, &err),
    }
}

async fn completions(State(stats): State<Arc<Stats>>, body: Bytes) -> Response {
    serve_endpoint(&stats, &body, None, |model, request| {
        let (json, events) = endpoints::completion(model, request);
        Answer::Prepared {
            json,
            events: request.is_stream().then_some(events),
        }
    })
    .await
}

async fn embeddings(State(stats): State<Arc<Stats>>, body: Bytes) -> Response {
    serve_endpoint(&stats, &body, None, |model, request| Answer::Prepared {
        json: endpoints::embeddings(model, request),
        events: None,
    })
    .await
}

async fn moderations(State(stats): State<Arc<Stats>>, body: Bytes) -> Response {
    serve_endpoint(
        &stats,
        &body,
        Some("omni-moderation-latest"),
        |model, request| Answer::Prepared {
            json: endpoints::moderation(model, request),
            events: None,
        },
    )
    .await
}

/// A completions, embeddings or moderations request: read, then served like a chat request,
/// faults included. `default_model` stands in for a request without one.
async fn serve_endpoint(
    stats: &Arc<Stats>,
    body: &[u8],
    default_model: Option<&str>,
    answer: impl for<'r> FnOnce(&str, &'r EndpointRequest) -> Answer<'r>,
) -> Response {
    match serde_json::from_slice::<EndpointRequest>(body) {
        Ok(request) => {
            let model = request
                .model
                .clone()
                .or_else(|| default_model.map(str::to_owned))
                .unwrap_or_default();
            serve(stats, model, |model| answer(model, &request)).await
        }
        Err(err) => refuse(stats, &err),
    }
}

pub(super) fn refuse(stats: &Stats, err: &serde_json::Error) -> Response {
    stats.record_request("");
    with_request_id(unparsable_body(err))
}

/// Counts the call, applies the model's fault and answers.
pub(super) async fn serve<'a>(
    stats: &Arc<Stats>,
    model: String,
    answer: impl FnOnce(&str) -> Answer<'a>,
) -> Response {
    let (mut guard, call) = CallGuard::begin(stats, model);
    let answer = answer(guard.model());
    let response = match respond(stats, guard.model(), call, &answer).await {
        Ok(Outcome::Whole(response)) => {
            guard.finish();
            response
        }
        Ok(Outcome::Paced(paced)) => paced.into_response(guard),
        Err(err) => {
            guard.finish();
            err.into_response()
        }
    };
    with_request_id(response)
}

fn with_request_id(mut response: Response) -> Response {
    if let Ok(id) = HeaderValue::try_from(request_id()) {
        response.headers_mut().insert(X_REQUEST_ID, id);
    }
    response
}

async fn respond(
    stats: &Stats,
    model: &str,
    call: u64,
    answer: &Answer<'_>,
) -> Result<Outcome, EncodeError> {
    let mut fault = Fault::from_model(model);
    if let Fault::Chaos(chaos) = fault {
        tokio::time::sleep(chaos.latency).await;
        fault = chaos.draw(call);
        stats.record_draw(model, fault.kind());
    }
    match fault {
        // A chaos model's draw is never itself chaos.
        Fault::Healthy | Fault::Chaos(_) => healthy(model, answer),
        Fault::Slow(delay) => {
            tokio::time::sleep(delay).await;
            healthy(model, answer)
        }
        Fault::RateLimited { first, hint } if call <= first => rate_limited(hint),
        Fault::ServerError { first } if call <= first => api_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &ApiError::new(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
                None,
            ),
        ),
        Fault::RateLimited { .. } | Fault::ServerError { .. } => healthy(model, answer),
        Fault::FlexBusy { first } if call <= first && answer.is_flex() => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            &ApiError::new(
                "Resource unavailable: there is no flex capacity for this request right now.",
                "invalid_request_error",
                None,
                Some("resource_unavailable"),
            ),
        ),
        Fault::FlexBusy { .. } => healthy(model, answer),
        Fault::Quota => api_error(
            StatusCode::TOO_MANY_REQUESTS,
            &ApiError::new(
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                None,
                Some("insufficient_quota"),
            ),
        ),
        Fault::ContextLength => api_error(
            StatusCode::BAD_REQUEST,
            &ApiError::new(
                "This model's maximum context length is 10 tokens.",
                "invalid_request_error",
                Some("messages"),
                Some("context_length_exceeded"),
            ),
        ),
        Fault::Hang => {
            // Only the client giving up ends this request: hyper then drops this future.
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Fault::HangFirst { first } if call <= first => {
            let never: Infallible = std::future::pending().await;
            match never {}
        }
        Fault::HangFirst { .. } => healthy(model, answer),
        Fault::BadJson => Ok(Outcome::Whole(with_content_type(
            StatusCode::OK,
            APPLICATION_JSON,
            Body::from(r#"{"id": "chatcmpl-broken", "choices": ["#),
        ))),
        Fault::SseCut | Fault::Truncated => {
            let events = match fault {
                Fault::SseCut => answer.events(model)?,
                _ => None,
            };
            let paced = match events {
                Some(events) => Paced {
                    content_type: EVENT_STREAM,
                    content_length: None,
                    pieces: vec![events.cut_in_second_event()],
                    pause: Duration::ZERO,
                    ending: Ending::Cut,
                },
                None => {
                    let json = answer.json(model)?;
                    Paced {
                        content_type: APPLICATION_JSON,
                        content_length: Some(json.len()),
                        pieces: vec![json.slice(..json.len() / 2)],
                        pause: Duration::ZERO,
                        ending: Ending::Cut,
                    }
                }
            };
            Ok(Outcome::Paced(paced))
        }
        Fault::Drip(pause) => drip(model, answer, pause),
    }
}

fn healthy(model: &str, answer: &Answer<'_>) -> Result<Outcome, EncodeError> {
    let response = match answer.events(model)? {
        Some(events) => with_content_type(StatusCode::OK, EVENT_STREAM, Body::from(events.bytes)),
        None => with_content_type(
            StatusCode::OK,
            APPLICATION_JSON,
            Body::from(answer.json(model)?),
        ),
    };
    Ok(Outcome::Whole(response))
}

fn drip(model: &str, answer: &Answer<'_>, pause: Duration) -> Result<Outcome, EncodeError> {
    let paced = match answer.events(model)? {
        Some(events) => Paced {
            content_type: EVENT_STREAM,
            content_length: None,
            pieces: events.events(),
            pause,
            ending: Ending::Complete,
        },
        None => {
            let json = answer.json(model)?;
            Paced {
                content_type: APPLICATION_JSON,
                content_length: Some(json.len()),
                pieces: (0..json.len())
                    .step_by(DRIP_PIECE_BYTES)
                    .map(|at| json.slice(at..json.len().min(at + DRIP_PIECE_BYTES)))
                    .collect(),
                pause,
                ending: Ending::Complete,
            }
        }
    };
    Ok(Outcome::Paced(paced))
}

fn rate_limited(hint: RetryHint) -> Result<Outcome, EncodeError> {
    let (message, header, value) = match hint {
        RetryHint::Seconds => (
            "Rate limit reached for requests. Please try again in 1s.",
            RETRY_AFTER,
            "1",
        ),
        RetryHint::Millis => (
            "Rate limit reached for requests. Please try again in 200ms.",
            RETRY_AFTER_MS,
            "200",
        ),
    };
    let error = ApiError::new(message, "requests", None, Some("rate_limit_exceeded"));
    let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, &error)?;
    response
        .headers_mut()
        .insert(header, HeaderValue::from_static(value));
    Ok(Outcome::Whole(response))
}

fn api_error(status: StatusCode, error: &ApiError<'_>) -> Result<Outcome, EncodeError> {
    error_response(status, error).map(Outcome::Whole)
}

fn error_response(status: StatusCode, error: &ApiError<'_>) -> Result<Response, EncodeError> {
    Ok(with_content_type(
        status,
        APPLICATION_JSON,
        Body::from(error.to_json()?),
    ))
}

fn unparsable_body(err: &serde_json::Error) -> Response {
    let message = format!("We could not parse the JSON body of your request: {err}");
    let error = ApiError::new(&message, "invalid_request_error", None, None);
    error_response(StatusCode::BAD_REQUEST, &error).unwrap_or_else(IntoResponse::into_response)
}

fn with_content_type(status: StatusCode, content_type: &'static str, body: Body) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl Paced {
    fn into_response(self, guard: CallGuard) -> Response {
        let Self {
            content_type,
            content_length,
            pieces,
            pause,
            ending,
        } = self;
        let state = PaceState {
            pieces: pieces.into_iter(),
            pause,
            ending,
            guard,
            started: false,
        };
        let stream = futures::stream::unfold(Some(state), next_piece);
        let mut response =
            with_content_type(StatusCode::OK, content_type, Body::from_stream(stream));
        if let Some(length) = content_length {
            // Hyper trusts an explicit length for a body of unknown size, which is what lets a
            // truncated body promise more bytes than it sends.
            response
                .headers_mut()
                .insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        response
    }
}

struct PaceState {
    pieces: std::vec::IntoIter<Bytes>,
    pause: Duration,
    ending: Ending,
    /// Rides along with the body: the client can still go away after the handler returned.
    guard: CallGuard,
    started: bool,
}

type PieceStep = Option<(Result<Bytes, DeliberateCut>, Option<PaceState>)>;

async fn next_piece(state: Option<PaceState>) -> PieceStep {
    let mut state = state?;
    if let Some(piece) = state.pieces.next() {
        if state.started && !state.pause.is_zero() {
            tokio::time::sleep(state.pause).await;
        }
        state.started = true;
        if state.pieces.as_slice().is_empty() {
            // Hyper stops polling a body once its declared length is out, so waiting for the
            // stream's end would count every complete drip as aborted.
            state.guard.finish();
        }
        return Some((Ok(piece), Some(state)));
    }
    state.guard.finish();
    match state.ending {
        Ending::Complete => None,
        Ending::Cut => {
            tokio::time::sleep(CUT_GRACE).await;
            Some((Err(DeliberateCut), None))
        }
    }
}

async fn list_models() -> Json<serde_json::Value> {
    let models: Vec<serde_json::Value> = [
        "gpt-4o-mini",
        "gpt-4o",
        "gpt-3.5-turbo-instruct",
        "text-embedding-3-small",
        "omni-moderation-latest",
        "mock-echo",
        "mock-slow-100",
        "mock-429-1",
        "mock-hang",
    ]
    .iter()
    .map(|id| {
        serde_json::json!({
            "id": id,
            "object": "model",
            "created": 1_700_000_000,
            "owned_by": "prism-testkit",
        })
    })
    .collect();
    Json(serde_json::json!({ "object": "list", "data": models }))
}

async fn report_stats(State(stats): State<Arc<Stats>>) -> Json<super::StatsSnapshot> {
    Json(stats.snapshot())
}

async fn reset_stats(State(stats): State<Arc<Stats>>) -> StatusCode {
    stats.reset();
    StatusCode::NO_CONTENT
}

async fn unknown_route(method: Method, uri: Uri) -> Response {
    let message = format!("Unknown request URL: {method} {}.", uri.path());
    let error = ApiError::new(&message, "invalid_request_error", None, Some("unknown_url"));
    error_response(StatusCode::NOT_FOUND, &error).unwrap_or_else(IntoResponse::into_response)
}

//! Reading a request defensively: extractors whose rejections answer in OpenAI's shape, the
//! headers Prism reads (`x-prism-async`, `Idempotency-Key`), and bodies read under the per-request
//! cap and the process-wide budget of body bytes held in memory.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use bytes::BytesMut;
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

pub const ASYNC_HEADER: &str = "x-prism-async";
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
pub const REDIRECT_HEADER: &str = "x-prism-redirect";
/// As the core bounds a key; checked here too so the answer names the header.
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// A path id. Not UTF-8 (`/v1/async/%FF`) is a 400 in our shape, not axum's plain text.
pub struct IdPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(id) = Path::<String>::from_request_parts(parts, state).await?;
        Ok(Self(id))
    }
}

/// The query string as name → value (the last of a repeated name wins, as before).
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Query(params) = Query::from_request_parts(parts, state).await?;
        Ok(Self(params))
    }
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

/// `x-prism-async`: absent or `false` is synchronous, `true` is async (both case-insensitive).
/// Anything else, a repeated header included, is refused rather than guessed: running a request
/// the client meant as a job synchronously would bill it without a job to poll.
pub fn async_mode(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut values = headers.get_all(ASYNC_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    let refuse = || {
        ApiError::bad_header(
            ASYNC_HEADER,
            "The x-prism-async header must be sent once, as 'true' or 'false'.",
        )
    };
    if values.next().is_some() {
        return Err(refuse());
    }
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("true") => Ok(true),
        Ok(v) if v.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(refuse()),
    }
}

/// `Idempotency-Key`: sent once, 1 to 255 printable ASCII characters. A key that is not text is
/// refused, never ignored: ignoring it would let a retry create a second job.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let valid = values.next().is_none()
        && !bytes.is_empty()
        && bytes.len() <= MAX_IDEMPOTENCY_KEY_BYTES
        && bytes.iter().all(u8::is_ascii_graphic);
    match value.to_str() {
        Ok(key) if valid => Ok(Some(key)),
        _ => Err(ApiError::bad_header(
            "Idempotency-Key",
            "The Idempotency-Key header must be sent once, as 1 to 255 printable ASCII characters.",
        )
        .code("invalid_idempotency_key")),
    }
}

/// `x-prism-redirect: json` on a file's content: a download the blob store serves itself is
/// answered with its URL in JSON instead of a 307. A browser page whose CSP allows only its own
/// origin (the console) cannot follow the redirect, but can navigate to the URL. Any other value,
/// or the header twice, is refused rather than ignored.
pub fn redirect_as_json(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut values = headers.get_all(REDIRECT_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(false);
    };
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("json") && values.next().is_none() => Ok(true),
        _ => Err(ApiError::bad_header(
            REDIRECT_HEADER,
            "The x-prism-redirect header must be sent once, as 'json'.",
        )),
    }
}

/// The process-wide budget of request-body bytes held in memory at once. A body that does not fit
/// is answered 503 with `retry-after` instead of being buffered.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
}

impl BodyBudget {
    pub fn new(max_bytes: usize) -> Self {
        Self {
            bytes: Arc::new(Semaphore::new(max_bytes.min(Semaphore::MAX_PERMITS))),
        }
    }

    fn reserve(&self, bytes: usize) -> Result<OwnedSemaphorePermit, ApiError> {
        let bytes = u32::try_from(bytes).map_err(|_| ApiError::busy())?;
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(bytes)
            .map_err(|_| ApiError::busy())
    }
}

/// A buffered body and its share of the budget, given back when this is dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _reserved: Option<OwnedSemaphorePermit>,
}

/// Reads the whole body, refusing more than `limit` bytes (413) and more than the budget holds
/// (503). A declared length is reserved before anything is read; a chunked body chunk by chunk.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    budget: &BodyBudget,
) -> Result<HeldBody, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut stream = body.into_data_stream();
    let mut reserved = match declared {
        Some(0) | None => None,
        Some(n) => match budget.reserve(n) {
            Ok(permit) => Some(permit),
            Err(busy) => return Err(drain(stream, 0, limit, busy).await),
        },
    };
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| body_error(&e))?;
        if buffer.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        let held = reserved.as_ref().map_or(0, |r| r.num_permits());
        let needed = (buffer.len() + chunk.len()).saturating_sub(held);
        if needed > 0 {
            match budget.reserve(needed) {
                Ok(more) => match reserved.as_mut() {
                    Some(permit) => permit.merge(more),
                    None => reserved = Some(more),
                },
                Err(busy) => {
                    let read = buffer.len() + chunk.len();
                    drop((buffer, reserved));
                    return Err(drain(stream, read, limit, busy).await);
                }
            }
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(HeldBody {
        bytes: buffer.freeze(),
        _reserved: reserved,
    })
}

/// Whether a body failed because it stalled past the body read timeout.
pub fn is_body_timeout(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if current.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        source = current.source();
    }
    false
}

/// Reads the rest of a refused body without keeping it, then answers `refusal`. A server that
/// answers and closes while the client still sends makes the kernel reset the connection, and
/// the client loses the answer (and its `retry-after`); reading costs no memory. A body past
/// `limit` stops the draining: it would be refused anyway, and the connection is closed.
async fn drain(
    mut stream: axum::body::BodyDataStream,
    mut read: usize,
    limit: usize,
    refusal: ApiError,
) -> ApiError {
    while read <= limit {
        match stream.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            Some(Err(_)) | None => break,
        }
    }
    refusal
}

/// A body that stalled past the body read timeout is a 408; one that broke off otherwise (the
/// client went away, bad chunked framing) a 400.
fn body_error(error: &axum::Error) -> ApiError {
    if is_body_timeout(error) {
        return ApiError::body_timeout();
    }
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "invalid_request_error",
        "The request body could not be read.",
    )
    .code("invalid_body")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(name: &'static str, values: &[&[u8]]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for value in values {
            map.append(name, HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn async_mode_accepts_true_and_false_in_any_case_and_nothing_else() {
        assert!(!async_mode(&HeaderMap::new()).unwrap());
        assert!(async_mode(&headers(ASYNC_HEADER, &[b"TRUE"])).unwrap());
        assert!(!async_mode(&headers(ASYNC_HEADER, &[b" False "])).unwrap());
        for bad in [&b"1"[..], b"yes", b"true, true", b"", b"tr\xc3\xbce"] {
            assert!(
                async_mode(&headers(ASYNC_HEADER, &[bad])).is_err(),
                "{bad:?}"
            );
        }
        assert!(async_mode(&headers(ASYNC_HEADER, &[b"true", b"true"])).is_err());
    }

    #[test]
    fn an_idempotency_key_that_is_not_printable_ascii_is_refused_not_dropped() {
        assert_eq!(idempotency_key(&HeaderMap::new()).unwrap(), None);
        assert_eq!(
            idempotency_key(&headers(IDEMPOTENCY_HEADER, &[b"key-1"])).unwrap(),
            Some("key-1")
        );
        let long = vec![b'k'; 256];
        for bad in [&b"cl\xc3\xa9"[..], b"", b"a b", &long] {
            let error = idempotency_key(&headers(IDEMPOTENCY_HEADER, &[bad])).unwrap_err();
            assert_eq!(error.param.as_deref(), Some("Idempotency-Key"));
        }
        assert!(idempotency_key(&headers(IDEMPOTENCY_HEADER, &[b"a", b"b"])).is_err());
    }

    #[tokio::test]
    async fn a_body_past_the_budget_is_refused_and_its_bytes_come_back_when_dropped() {
        let budget = BodyBudget::new(10);
        let declared = |n: usize| {
            let mut map = HeaderMap::new();
            map.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            map
        };
        let first = read_body(Body::from("123456"), &declared(6), 100, &budget)
            .await
            .unwrap();
        let refused = read_body(Body::from("123456"), &declared(6), 100, &budget).await;
        assert_eq!(
            refused.err().map(|e| e.status),
            Some(axum::http::StatusCode::SERVICE_UNAVAILABLE)
        );
        drop(first);
        let again = read_body(Body::from("123456"), &HeaderMap::new(), 100, &budget).await;
        assert_eq!(again.unwrap().bytes, "123456");
    }
}

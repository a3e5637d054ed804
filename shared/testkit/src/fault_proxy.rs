//! A fault-injecting HTTP proxy for the AWS emulator: forwards every request to it, except that
//! a few per cent are answered with the errors real AWS gives under load (DynamoDB throttling,
//! SQS and S3 5xx), have their connection reset before the request reaches the emulator or
//! after its write happened there, or hang: the emulator does the request and its answer never
//! comes, until the client gives up. Loopback only; counts what it injected.
//!
//! The service of a request is read from its SigV4 credential scope (`…/dynamodb/aws4_request`),
//! which every SDK request carries; unsigned requests and other services are forwarded untouched.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

/// Per-request probabilities, each in [0, 1]; drawn in this order, at most one per request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultRates {
    /// DynamoDB: 400 `ThrottlingException` or `ProvisionedThroughputExceededException`.
    pub dynamodb_throttle: f64,
    /// SQS: 500 `InternalError` or 503 `ServiceUnavailable`.
    pub sqs_5xx: f64,
    /// S3: 503 `SlowDown`.
    pub s3_slow_down: f64,
    /// Any of the three: the connection is reset and the request never reaches the emulator.
    pub reset_before: f64,
    /// Any of the three: the emulator does the request, then the client's connection is reset
    /// instead of hearing the answer.
    pub reset_after: f64,
    /// Any of the three: the emulator does the request, and its answer is held back for as
    /// long as the client waits (a call that never answers).
    pub hang: f64,
}

/// What the proxy did, per service (`dynamodb`, `sqs`, `s3`, ...) and action (`forwarded`,
/// `throttled`, `5xx`, `slow_down`, `reset_before`, `reset_after`, `hung`, `upstream_error`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProxyCounts(pub BTreeMap<String, BTreeMap<String, u64>>);

/// Where `GET` reads the counters; `_` is not allowed in a bucket name, so no S3 path collides.
pub const COUNTS_PATH: &str = "/_fault_proxy/counts";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Action {
    Forward,
    Throttle,
    ServerError,
    SlowDown,
    ResetBefore,
    ResetAfter,
    Hang,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Forward => "forwarded",
            Action::Throttle => "throttled",
            Action::ServerError => "5xx",
            Action::SlowDown => "slow_down",
            Action::ResetBefore => "reset_before",
            Action::ResetAfter => "reset_after",
            Action::Hang => "hung",
        }
    }
}

struct Shared {
    upstream: Uri,
    rates: FaultRates,
    rng: Mutex<StdRng>,
    counts: Mutex<ProxyCounts>,
    /// Operations (`TransactWriteItems`, `SendMessage`) whose next requests get a reset (before
    /// or after the emulator did them) or hang, and how many more: a test's chosen fault.
    armed: Mutex<BTreeMap<String, (Action, u32)>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Shared {
    fn roll(&self) -> f64 {
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .random::<f64>()
    }

    fn choose(&self, service: &str) -> Action {
        let mut roll = self.roll();
        let specific = match service {
            "dynamodb" => Some((self.rates.dynamodb_throttle, Action::Throttle)),
            "sqs" => Some((self.rates.sqs_5xx, Action::ServerError)),
            "s3" => Some((self.rates.s3_slow_down, Action::SlowDown)),
            _ => None,
        };
        let Some(specific) = specific else {
            return Action::Forward;
        };
        for (rate, action) in [
            specific,
            (self.rates.reset_before, Action::ResetBefore),
            (self.rates.reset_after, Action::ResetAfter),
            (self.rates.hang, Action::Hang),
        ] {
            if roll < rate {
                return action;
            }
            roll -= rate;
        }
        Action::Forward
    }

    /// The armed fault of this request's operation (JSON protocols name it in `x-amz-target`),
    /// if any is left.
    fn armed_for<B>(&self, request: &Request<B>) -> Option<Action> {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|value| value.to_str().ok())
            .and_then(|target| target.rsplit('.').next())?;
        let mut armed = self.armed.lock().unwrap_or_else(PoisonError::into_inner);
        let (action, left) = armed.get_mut(operation).filter(|(_, left)| *left > 0)?;
        *left -= 1;
        Some(*action)
    }

    fn count(&self, service: &str, action: &str) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts
            .0
            .entry(service.to_owned())
            .or_default()
            .entry(action.to_owned())
            .or_default() += 1;
    }
}

/// A running proxy; dropping the handle stops it accepting connections.
pub struct FaultProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl FaultProxy {
    /// Resets the connection of the next `times` requests of `operation` (DynamoDB's
    /// `TransactWriteItems`, SQS's `SendMessage`) after the emulator did them: the write
    /// happened, its answer is lost.
    pub fn reset_after_next(&self, operation: &str, times: u32) {
        self.arm(operation, Action::ResetAfter, times);
    }

    /// Resets the connection of the next `times` requests of `operation` before they reach the
    /// emulator: nothing happened.
    pub fn reset_before_next(&self, operation: &str, times: u32) {
        self.arm(operation, Action::ResetBefore, times);
    }

    /// Holds back the answer of the next `times` requests of `operation` after the emulator did
    /// them, for as long as the client waits: the call never answers.
    pub fn hang_next(&self, operation: &str, times: u32) {
        self.arm(operation, Action::Hang, times);
    }

    fn arm(&self, operation: &str, action: Action, times: u32) {
        self.shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(operation.to_owned(), (action, times));
    }

    /// What was injected and forwarded so far.
    pub fn counts(&self) -> ProxyCounts {
        self.shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Binds `listen` (loopback; port 0 for a free one) and forwards to `upstream`
/// (`http://host:port`), drawing faults from `seed`.
pub async fn spawn_fault_proxy(
    listen: SocketAddr,
    upstream: Uri,
    rates: FaultRates,
    seed: u64,
) -> io::Result<FaultProxy> {
    if !listen.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the fault proxy listens on loopback only",
        ));
    }
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let shared = Arc::new(Shared {
        upstream,
        rates,
        rng: Mutex::new(StdRng::seed_from_u64(seed)),
        counts: Mutex::new(ProxyCounts::default()),
        armed: Mutex::new(BTreeMap::new()),
        client: Client::builder(TokioExecutor::new()).build_http(),
    });
    let (stop, mut stopped) = oneshot::channel::<()>();
    let accepting = Arc::clone(&shared);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = &mut stopped => return,
            };
            let Ok((stream, _)) = accepted else { continue };
            tokio::spawn(serve_connection(stream, Arc::clone(&accepting)));
        }
    });
    Ok(FaultProxy {
        addr,
        shared,
        _stop: stop,
    })
}

/// A client connection that closes with RST instead of FIN once `reset` is set: what a reset
/// is (a clean close the SDK may read differently). Only then: every close with zero linger
/// would also throw away response bytes still unsent, and moto answers `Connection: close`, so a
/// large answer (an S3 object) would be cut short without any fault being drawn.
struct ClientStream {
    stream: TcpStream,
    reset: Arc<AtomicBool>,
}

impl Drop for ClientStream {
    fn drop(&mut self) {
        if self.reset.load(Ordering::SeqCst) {
            // Best effort: if it fails, the close is a clean one.
            let _ = self.stream.set_zero_linger();
        }
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Serves one client connection until it closes, or drops it (an RST) when a request's fault
/// is a reset.
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let reset = Arc::new(Notify::new());
    let service = {
        let reset = Arc::clone(&reset);
        service_fn(move |request| handle(request, Arc::clone(&shared), Arc::clone(&reset)))
    };
    let resetting = Arc::new(AtomicBool::new(false));
    let stream = ClientStream {
        stream,
        reset: Arc::clone(&resetting),
    };
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = &mut connection => {}
        // Returning drops the connection and its stream, which closes with RST now.
        () = reset.notified() => resetting.store(true, Ordering::SeqCst),
    }
}

async fn handle(
    request: Request<Incoming>,
    shared: Arc<Shared>,
    reset: Arc<Notify>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == COUNTS_PATH {
        let counts = shared
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let body = serde_json::to_vec(&counts.0).unwrap_or_default();
        return Ok(reply(StatusCode::OK, "application/json", body));
    }
    let service = service_of(&request);
    let action = shared
        .armed_for(&request)
        .unwrap_or_else(|| shared.choose(&service));
    shared.count(&service, action.name());
    let reply_now = match action {
        Action::Throttle => Some(dynamodb_throttle(shared.roll() < 0.5)),
        Action::ServerError => Some(sqs_server_error(shared.roll() < 0.5)),
        Action::SlowDown => Some(s3_slow_down()),
        Action::ResetBefore => {
            reset.notify_one();
            return std::future::pending().await;
        }
        Action::Forward | Action::ResetAfter | Action::Hang => None,
    };
    if let Some(response) = reply_now {
        return Ok(response);
    }
    match forward(request, &shared).await {
        Ok(response) if action == Action::ResetAfter => {
            drop(response);
            reset.notify_one();
            std::future::pending().await
        }
        // Never answered: the client gives up on its own timeout, or waits for ever.
        Ok(_) if action == Action::Hang => std::future::pending().await,
        Ok(response) => Ok(response),
        Err(err) => {
            shared.count(&service, "upstream_error");
            let body = format!("fault proxy: the emulator did not answer: {err}");
            Ok(reply(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                body.into_bytes(),
            ))
        }
    }
}

/// The service named in the SigV4 credential scope, `-` for an unsigned request.
fn service_of<B>(request: &Request<B>) -> String {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split([',', ' ']).next())
        .and_then(|scope| scope.split('/').nth(3))
        .map_or_else(|| "-".to_owned(), str::to_owned)
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("reading the request body: {0}")]
    Body(#[from] hyper::Error),
    #[error("building the upstream address: {0}")]
    Uri(#[from] hyper::http::Error),
    #[error("{0}")]
    Client(#[from] hyper_util::client::legacy::Error),
}

/// The request as it came, to the emulator; its whole answer, read before anything is decided.
async fn forward(
    request: Request<Incoming>,
    shared: &Shared,
) -> Result<Response<Full<Bytes>>, ForwardError> {
    let (mut parts, body) = request.into_parts();
    let body = body.collect().await?.to_bytes();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", hyper::http::uri::PathAndQuery::as_str);
    let mut upstream = Uri::builder();
    if let Some(scheme) = shared.upstream.scheme() {
        upstream = upstream.scheme(scheme.clone());
    }
    if let Some(authority) = shared.upstream.authority() {
        upstream = upstream.authority(authority.clone());
    }
    parts.uri = upstream.path_and_query(path).build()?;
    // The signature covers `host`, so the client's own header goes through unchanged.
    let host = parts.headers.get(HOST).cloned();
    let mut forwarded = Request::from_parts(parts, Full::new(body));
    if let Some(host) = host {
        forwarded.headers_mut().insert(HOST, host);
    }
    let response = shared.client.request(forwarded).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, Full::new(body)))
}

fn reply(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// The two codes the SDK's error classifier lists as throttling for DynamoDB.
fn dynamodb_throttle(provisioned: bool) -> Response<Full<Bytes>> {
    let kind = if provisioned {
        "ProvisionedThroughputExceededException"
    } else {
        "ThrottlingException"
    };
    let body = format!(
        r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"Rate of requests exceeds the allowed throughput (fault proxy)."}}"#
    );
    reply(
        StatusCode::BAD_REQUEST,
        "application/x-amz-json-1.0",
        body.into_bytes(),
    )
}

fn sqs_server_error(unavailable: bool) -> Response<Full<Bytes>> {
    let (status, kind) = if unavailable {
        (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable")
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "InternalError")
    };
    let body = format!(
        r#"{{"__type":"com.amazonaws.sqs#{kind}","message":"We encountered an internal error (fault proxy)."}}"#
    );
    let mut response = reply(status, "application/x-amz-json-1.0", body.into_bytes());
    response.headers_mut().insert(
        "x-amzn-query-error",
        HeaderValue::from_static("InternalError;Receiver"),
    );
    response
}

fn s3_slow_down() -> Response<Full<Bytes>> {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message>\
                <RequestId>faultproxy</RequestId></Error>";
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        "application/xml",
        body.as_bytes().to_vec(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code

    use super::*;

    fn signed(service: &str) -> Request<()> {
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/{service}/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature=abc"
        );
        Request::builder()
            .header(AUTHORIZATION, auth)
            .body(())
            .unwrap()
    }

    #[test]
    fn the_service_comes_from_the_credential_scope() {
        assert_eq!(service_of(&signed("dynamodb")), "dynamodb");
        assert_eq!(service_of(&signed("sqs")), "sqs");
        assert_eq!(service_of(&Request::new(())), "-");
    }

    const FAULTLESS: FaultRates = FaultRates {
        dynamodb_throttle: 0.0,
        sqs_5xx: 0.0,
        s3_slow_down: 0.0,
        reset_before: 0.0,
        reset_after: 0.0,
        hang: 0.0,
    };

    fn shared_with(rates: FaultRates) -> Shared {
        Shared {
            upstream: Uri::from_static("http://127.0.0.1:1"),
            rates,
            rng: Mutex::new(StdRng::seed_from_u64(3)),
            counts: Mutex::new(ProxyCounts::default()),
            armed: Mutex::new(BTreeMap::new()),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    #[test]
    fn an_armed_operation_gets_its_fault_as_many_times_as_asked() {
        let shared = shared_with(FAULTLESS);
        shared
            .armed
            .lock()
            .unwrap()
            .insert("PutItem".into(), (Action::ResetAfter, 2));
        let request = |operation: &str| {
            Request::builder()
                .header("x-amz-target", format!("DynamoDB_20120810.{operation}"))
                .body(())
                .unwrap()
        };
        assert_eq!(shared.armed_for(&request("GetItem")), None);
        assert_eq!(
            shared.armed_for(&request("PutItem")),
            Some(Action::ResetAfter)
        );
        assert_eq!(
            shared.armed_for(&request("PutItem")),
            Some(Action::ResetAfter)
        );
        assert_eq!(shared.armed_for(&request("PutItem")), None);
        assert_eq!(shared.armed_for(&Request::new(())), None);
    }

    #[test]
    fn faults_go_only_to_their_service_at_about_their_rate() {
        let shared = shared_with(FaultRates {
            dynamodb_throttle: 0.1,
            sqs_5xx: 0.2,
            s3_slow_down: 0.0,
            reset_before: 0.05,
            reset_after: 0.05,
            hang: 0.05,
        });
        let mut seen = BTreeMap::<(&str, Action), u32>::new();
        for service in ["dynamodb", "sqs", "s3", "scheduler"] {
            for _ in 0..10_000 {
                *seen.entry((service, shared.choose(service))).or_default() += 1;
            }
        }
        let near =
            |n: Option<&u32>, expected: u32| n.copied().unwrap_or(0).abs_diff(expected) < 300;
        assert!(near(seen.get(&("dynamodb", Action::Throttle)), 1_000));
        assert!(near(seen.get(&("sqs", Action::ServerError)), 2_000));
        assert!(near(seen.get(&("s3", Action::ResetAfter)), 500));
        assert!(near(seen.get(&("sqs", Action::Hang)), 500));
        assert!(!seen.contains_key(&("s3", Action::SlowDown)));
        assert_eq!(seen.get(&("scheduler", Action::Forward)), Some(&10_000));
        assert!(!seen.contains_key(&("dynamodb", Action::ServerError)));
    }
}

//! `HttpUpstream` over real HTTP against small servers started inside each test.

// `allow-*-in-tests` covers only `#[test]` functions, not the helpers they share; in a helper a
// panic is still just a failing test.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::{StreamExt, stream};
use prism_core::ApiEndpoint;
use prism_core::jobs::JobError;
use prism_core::ports::{Relay, Upstream, UpstreamError};
use prism_upstream::{
    HttpUpstream, MAX_RETRY_AFTER, ProviderConfig, SecretKey, UpstreamBuildError, UpstreamOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PATIENCE: Duration = Duration::from_secs(5);
const COMPLETIONS: &str = "/v1/chat/completions";

/// Serves `router` on an ephemeral port; returns the `…/v1` base URL.
async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}/v1")
}

/// Serves a single fixed route answering every completion with `respond`.
async fn serve_fn<F, Fut, R>(respond: F) -> String
where
    F: Fn(HeaderMap, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse + 'static,
{
    serve(Router::new().route(COMPLETIONS, post(respond))).await
}

fn provider(name: &str, base_url: &str, models: &[&str], key: Option<&str>) -> ProviderConfig {
    ProviderConfig {
        name: name.to_owned(),
        base_url: base_url.to_owned(),
        api_key: key.map(SecretKey::from),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        batch: Default::default(),
        flex_fallback: Default::default(),
    }
}

fn upstream(providers: Vec<ProviderConfig>) -> HttpUpstream {
    HttpUpstream::new(providers, UpstreamOptions::default()).unwrap()
}

/// One provider serving every model from `base_url`.
fn single(base_url: &str) -> HttpUpstream {
    upstream(vec![provider("mock", base_url, &["*"], None)])
}

fn request(model: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#
    ))
}

fn json_response(status: StatusCode, headers: &[(&'static str, String)], body: &str) -> Response {
    let mut builder = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

fn model_of(body: &Bytes) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap();
    value["model"].as_str().unwrap().to_owned()
}

async fn failure(up: &HttpUpstream, model: &str) -> UpstreamError {
    up.complete(
        ApiEndpoint::ChatCompletions,
        model,
        request(model),
        PATIENCE,
    )
    .await
    .unwrap_err()
}

async fn relay(up: &HttpUpstream, model: &str) -> Relay {
    match tokio::time::timeout(
        PATIENCE,
        up.relay(ApiEndpoint::ChatCompletions, model, request(model)),
    )
    .await
    {
        Ok(Ok(relay)) => relay,
        Ok(Err(error)) => panic!("relay failed: {error:?}"),
        Err(_) => panic!("relay did not return once the head arrived"),
    }
}

async fn relay_error(up: &HttpUpstream, model: &str) -> UpstreamError {
    match up
        .relay(ApiEndpoint::ChatCompletions, model, request(model))
        .await
    {
        Ok(relay) => panic!("relay answered {}", relay.status),
        Err(error) => error,
    }
}

fn header<'a>(relay: &'a Relay, name: &str) -> Option<&'a str> {
    relay
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

async fn collect(relay: Relay) -> Vec<u8> {
    let mut body = relay.body;
    let mut out = Vec::new();
    while let Some(chunk) = tokio::time::timeout(PATIENCE, body.next()).await.unwrap() {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

#[tokio::test]
async fn completes_with_raw_upstream_body() {
    // Odd spacing, key order and unknown fields must all survive both ways.
    const RAW: &str = "{\"object\":\"chat.completion\",  \"id\":\"chatcmpl-1\",\n\"x_vendor\":{\"k\":[1,2.50]},\"choices\":[]}";
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let base = serve_fn(move |headers: HeaderMap, body: Bytes| {
        let record = record.clone();
        async move {
            let content_type = headers["content-type"].to_str().unwrap().to_owned();
            *record.lock().unwrap() = Some((content_type, body));
            json_response(StatusCode::OK, &[], RAW)
        }
    })
    .await;
    let sent = Bytes::from_static(
        br#"{"model":"gpt-4o","messages":[],"vendor_extra":{"a":1.0},  "metadata":null}"#,
    );

    let completion = single(&base)
        .complete(
            ApiEndpoint::ChatCompletions,
            "gpt-4o",
            sent.clone(),
            PATIENCE,
        )
        .await
        .unwrap();

    assert_eq!(completion.body, RAW);
    let (content_type, received) = seen.lock().unwrap().take().unwrap();
    assert_eq!(content_type, "application/json");
    assert_eq!(received, sent);
}

#[tokio::test]
async fn routes_by_first_matching_provider_glob() {
    let router = ["a", "b", "c"]
        .into_iter()
        .fold(Router::new(), |router, name| {
            let body = format!(r#"{{"provider":"{name}"}}"#);
            router.route(
                &format!("/{name}/v1/chat/completions"),
                post(move || async move { json_response(StatusCode::OK, &[], &body) }),
            )
        });
    let base = serve(router).await;
    let base = base.trim_end_matches("/v1");
    let up = upstream(vec![
        provider("a", &format!("{base}/a/v1"), &["gpt-4o*"], None),
        // Lists `gpt-4o-mini` outright, yet `a` comes first and wins it.
        provider(
            "b",
            &format!("{base}/b/v1/"),
            &["gpt-4o-mini", "gpt-?"],
            None,
        ),
        provider("c", &format!("{base}/c/v1"), &["*"], None),
    ]);

    for (model, expected) in [
        ("gpt-4o-mini", "a"),
        ("gpt-4o", "a"),
        ("gpt-5", "b"),
        ("gpt-41", "c"),
        ("claude-3", "c"),
    ] {
        assert!(up.routes(model));
        assert_eq!(up.provider_name(model), Some(expected));
        let completion = up
            .complete(
                ApiEndpoint::ChatCompletions,
                model,
                request(model),
                PATIENCE,
            )
            .await
            .unwrap();
        assert_eq!(
            completion.body,
            format!(r#"{{"provider":"{expected}"}}"#),
            "{model}"
        );
    }
}

#[tokio::test]
async fn sends_bearer_key_only_when_configured() {
    let base = serve_fn(|headers: HeaderMap, _body: Bytes| async move {
        let auth = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        json_response(
            StatusCode::OK,
            &[],
            &serde_json::json!({ "auth": auth }).to_string(),
        )
    })
    .await;
    let up = upstream(vec![
        provider("keyed", &base, &["keyed"], Some("sk-test-123")),
        provider("open", &base, &["open"], None),
    ]);

    let keyed = up
        .complete(
            ApiEndpoint::ChatCompletions,
            "keyed",
            request("keyed"),
            PATIENCE,
        )
        .await
        .unwrap();
    let open = up
        .complete(
            ApiEndpoint::ChatCompletions,
            "open",
            request("open"),
            PATIENCE,
        )
        .await
        .unwrap();

    assert_eq!(keyed.body, r#"{"auth":"Bearer sk-test-123"}"#);
    assert_eq!(open.body, r#"{"auth":null}"#);
}

#[tokio::test]
async fn maps_429_with_retry_after_ms_and_seconds() {
    let in_20s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(20));
    let base = serve_fn(move |_headers: HeaderMap, body: Bytes| {
        let in_20s = in_20s.clone();
        async move {
            let hints: Vec<(&'static str, String)> = match model_of(&body).as_str() {
                "ms" => vec![
                    ("retry-after-ms", "1500.5".to_owned()),
                    ("retry-after", "30".to_owned()),
                ],
                "seconds" => vec![("retry-after", "2.5".to_owned())],
                "date" => vec![("retry-after", in_20s)],
                "forever" => vec![("retry-after", "99999999".to_owned())],
                _ => vec![],
            };
            json_response(
                StatusCode::TOO_MANY_REQUESTS,
                &hints,
                r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#,
            )
        }
    })
    .await;
    let up = single(&base);

    let error = failure(&up, "ms").await;
    assert_eq!(
        error,
        UpstreamError::Status {
            status: 429,
            error: Some(JobError::new(
                "Rate limit reached",
                "requests",
                Some("rate_limit_exceeded")
            )),
            retry_after: Some(Duration::from_micros(1_500_500)),
            should_retry: None,
        }
    );
    assert!(error.is_retryable());

    let seconds = failure(&up, "seconds").await;
    assert_eq!(seconds.retry_after(), Some(Duration::from_millis(2500)));

    let date = failure(&up, "date").await.retry_after().unwrap();
    assert!(
        date > Duration::from_secs(15) && date <= Duration::from_secs(20),
        "{date:?}"
    );

    assert_eq!(
        failure(&up, "forever").await.retry_after(),
        Some(MAX_RETRY_AFTER)
    );
    assert_eq!(failure(&up, "none").await.retry_after(), None);
}

#[tokio::test]
async fn insufficient_quota_is_not_retryable() {
    let base = serve_fn(|_headers: HeaderMap, _body: Bytes| async {
        json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &[],
            r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        )
    })
    .await;

    let error = failure(&single(&base), "gpt-4o").await;

    assert!(matches!(
        &error,
        UpstreamError::Status { status: 429, error: Some(e), .. }
            if e.code.as_deref() == Some("insufficient_quota")
    ));
    assert!(!error.is_retryable());
    assert_eq!(error.to_job_error().kind, "insufficient_quota");
}

#[tokio::test]
async fn x_should_retry_false_overrides_status() {
    let base = serve_fn(|_headers: HeaderMap, body: Bytes| async move {
        let (status, hint) = match model_of(&body).as_str() {
            "overloaded" => (StatusCode::SERVICE_UNAVAILABLE, "false"),
            _ => (StatusCode::BAD_REQUEST, "TRUE"),
        };
        Response::builder()
            .status(status)
            .header("x-should-retry", hint)
            .body(Body::from("upstream says no"))
            .unwrap()
    })
    .await;
    let up = single(&base);

    let overloaded = failure(&up, "overloaded").await;
    assert_eq!(
        overloaded,
        UpstreamError::Status {
            status: 503,
            // A plain-text body is not OpenAI's error shape.
            error: None,
            retry_after: None,
            should_retry: Some(false),
        }
    );
    assert!(!overloaded.is_retryable());

    let rejected = failure(&up, "rejected").await;
    assert!(matches!(
        rejected,
        UpstreamError::Status {
            status: 400,
            should_retry: Some(true),
            ..
        }
    ));
    assert!(rejected.is_retryable());
}

/// Answers each connection with `response` verbatim after reading the whole request, then closes
/// it: a server that lies about its `content-length`, which axum refuses to be.
async fn serve_raw(response: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let n = socket.read(&mut buf).await.unwrap();
                    assert!(n > 0, "client hung up mid-request");
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        if seen.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                socket.write_all(response).await.unwrap();
                socket.shutdown().await.unwrap();
            });
        }
    });
    format!("http://{addr}/v1")
}

#[tokio::test]
async fn invalid_json_body_is_invalid_response() {
    let base = serve_fn(|_headers: HeaderMap, body: Bytes| async move {
        let answer = match model_of(&body).as_str() {
            "text" => "Internal hiccup, have some HTML <p>",
            "array" => "[1,2,3]",
            _ => r#"{"id":"chatcmpl-1","choices":["#,
        };
        json_response(StatusCode::OK, &[], answer)
    })
    .await;
    let up = single(&base);
    for model in ["text", "array", "cut-json"] {
        let error = failure(&up, model).await;
        assert!(
            matches!(error, UpstreamError::InvalidResponse(_)),
            "{model}: {error:?}"
        );
    }

    let truncated = serve_raw(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{\"id\":\"chatcmpl-1\",",
    )
    .await;
    let error = failure(&single(&truncated), "gpt-4o").await;
    assert!(
        matches!(error, UpstreamError::InvalidResponse(_)),
        "{error:?}"
    );
}

#[tokio::test]
async fn times_out_a_hanging_upstream() {
    let base = serve_fn(|_headers: HeaderMap, body: Bytes| async move {
        if model_of(&body) == "silent" {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        // The head and a first byte arrive, then nothing more.
        let trickle = stream::once(async { Ok::<_, Infallible>(Bytes::from_static(b"{")) })
            .chain(stream::pending());
        Response::builder()
            .header("content-type", "application/json")
            .body(Body::from_stream(trickle))
            .unwrap()
    })
    .await;
    let up = single(&base);

    for model in ["silent", "trickle"] {
        let started = Instant::now();
        let error = up
            .complete(
                ApiEndpoint::ChatCompletions,
                model,
                request(model),
                Duration::from_millis(300),
            )
            .await
            .unwrap_err();
        assert_eq!(error, UpstreamError::Timeout, "{model}");
        assert!(started.elapsed() < Duration::from_secs(3), "{model}");
    }
}

#[tokio::test]
async fn relays_sse_stream_chunk_by_chunk() {
    let (tx, rx) = mpsc::unbounded_channel::<&'static str>();
    let rx = Arc::new(Mutex::new(Some(rx)));
    let base = serve_fn(move |_headers: HeaderMap, _body: Bytes| {
        let rx = rx.lock().unwrap().take().unwrap();
        async move {
            let events = stream::unfold(rx, |mut rx| async move {
                let chunk = rx.recv().await?;
                Some((
                    Ok::<_, Infallible>(Bytes::from_static(chunk.as_bytes())),
                    rx,
                ))
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .header("x-request-id", "req_upstream_1")
                .header("x-ratelimit-remaining-requests", "99")
                .header("set-cookie", "session=secret")
                .header("openai-organization", "org-private")
                .body(Body::from_stream(events))
                .unwrap()
        }
    })
    .await;
    let up = single(&base);

    // Returns on the head alone: not one event has been sent yet.
    let relay = relay(&up, "gpt-4o").await;

    assert_eq!(relay.status, 200);
    let mut names: Vec<&str> = relay.headers.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "content-type",
            "x-ratelimit-remaining-requests",
            "x-upstream-request-id"
        ]
    );
    assert_eq!(header(&relay, "content-type"), Some("text/event-stream"));
    assert_eq!(
        header(&relay, "x-upstream-request-id"),
        Some("req_upstream_1")
    );
    let mut body = relay.body;
    for event in [
        "data: {\"choices\":[{\"delta\":{\"content\":\"He\"}}]}\n\n",
        "data: {\"choices\":[{\"delta\":{\"content\":\"llo\"}}]}\n\n",
        "data: [DONE]\n\n",
    ] {
        tx.send(event).unwrap();
        // The next event is only sent after this one arrived, so each is relayed on its own.
        let mut got = Vec::new();
        while got.len() < event.len() {
            let chunk = tokio::time::timeout(PATIENCE, body.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, event.as_bytes());
    }
    drop(tx);
    assert!(
        tokio::time::timeout(PATIENCE, body.next())
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn relay_passes_upstream_error_status_and_body() {
    const ERROR: &str = r#"{"error":{"message":"Rate limit reached","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    let base = serve_fn(|_headers: HeaderMap, _body: Bytes| async {
        json_response(
            StatusCode::TOO_MANY_REQUESTS,
            &[
                ("retry-after", "7".to_owned()),
                ("retry-after-ms", "6500".to_owned()),
                ("x-should-retry", "true".to_owned()),
                ("x-ratelimit-reset-requests", "6.5s".to_owned()),
            ],
            ERROR,
        )
    })
    .await;

    let relay = relay(&single(&base), "gpt-4o").await;

    assert_eq!(relay.status, 429);
    assert_eq!(header(&relay, "content-type"), Some("application/json"));
    assert_eq!(header(&relay, "retry-after"), Some("7"));
    assert_eq!(header(&relay, "retry-after-ms"), Some("6500"));
    assert_eq!(header(&relay, "x-should-retry"), Some("true"));
    assert_eq!(header(&relay, "x-ratelimit-reset-requests"), Some("6.5s"));
    assert_eq!(collect(relay).await, ERROR.as_bytes());
}

#[tokio::test]
async fn connection_refused_is_connect_error() {
    // A port that was just free and has nobody listening.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let up = single(&format!("http://{addr}/v1"));

    assert_eq!(failure(&up, "gpt-4o").await, UpstreamError::Connect);
    assert_eq!(relay_error(&up, "gpt-4o").await, UpstreamError::Connect);
    assert!(UpstreamError::Connect.is_retryable());
}

#[tokio::test]
async fn unknown_model_has_no_route() {
    let up = upstream(vec![provider(
        "openai",
        "http://127.0.0.1:9/v1",
        &["gpt-*"],
        None,
    )]);

    assert!(!up.routes("claude-3"));
    assert_eq!(up.provider_name("claude-3"), None);
    let no_route = UpstreamError::NoRoute("claude-3".to_owned());
    assert_eq!(failure(&up, "claude-3").await, no_route);
    assert_eq!(relay_error(&up, "claude-3").await, no_route);
}

#[tokio::test]
async fn does_not_follow_redirects() {
    let base = serve_fn(|_headers: HeaderMap, _body: Bytes| async {
        Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header("location", "http://attacker.invalid/steal")
            .body(Body::empty())
            .unwrap()
    })
    .await;

    let error = failure(&single(&base), "gpt-4o").await;

    assert!(matches!(error, UpstreamError::Status { status: 307, .. }));
}

#[test]
fn debug_output_never_shows_the_key() {
    let config = provider(
        "openai",
        "https://api.openai.com/v1",
        &["*"],
        Some("sk-live-SECRET"),
    );
    let up = upstream(vec![config.clone()]);

    for shown in [format!("{config:?}"), format!("{up:?}")] {
        assert!(!shown.contains("SECRET"), "{shown}");
    }
    assert!(format!("{config:?}").contains("***"));
}

#[test]
fn rejects_unusable_provider_configs() {
    let build =
        |config: ProviderConfig| HttpUpstream::new(vec![config], UpstreamOptions::default());
    assert!(matches!(
        build(provider("p", "not a url", &["*"], None)),
        Err(UpstreamBuildError::InvalidBaseUrl { .. })
    ));
    assert!(matches!(
        build(provider("p", "ftp://example.com/v1", &["*"], None)),
        Err(UpstreamBuildError::InvalidBaseUrl { .. })
    ));
    assert!(matches!(
        build(provider("p", "https://example.com/v1", &["*"], Some(""))),
        Err(UpstreamBuildError::InvalidApiKey { .. })
    ));
    assert!(matches!(
        build(provider(
            "p",
            "https://example.com/v1",
            &["*"],
            Some("sk\nx")
        )),
        Err(UpstreamBuildError::InvalidApiKey { .. })
    ));
    assert!(matches!(
        build(provider("p", "https://example.com/v1", &[], None)),
        Err(UpstreamBuildError::NoModels { .. })
    ));
}

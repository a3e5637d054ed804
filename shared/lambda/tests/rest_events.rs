//! API Gateway REST API (payload 1.0) events from `infra/events/rest-*.json` through what `api`
//! runs: `lambda_http`'s event conversion, the stage stripping and the real router over embedded
//! (SQLite) storage. The last test runs the real `lambda_http` streaming runtime in a child
//! process against a fake Lambda Runtime API and checks the bytes it sends back.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers sit outside #[test] functions, where clippy.toml's allowances do not reach"
)]

use std::convert::Infallible;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response, StatusCode};
use axum::routing::{get, post};
use bytes::Bytes;
use lambda_http::request::{RequestContext, from_str};
use lambda_http::tower::util::BoxCloneSyncService;
use lambda_http::tower::{ServiceBuilder, ServiceExt};
use lambda_http::{Request, RequestExt};
use prism_core::deps::Deps;
use prism_core::deps::Policies;
use prism_core::ids::IdGenerator;
use prism_core::jobs::NewJob;
use prism_core::keys::{ApiKeyRecord, hash_key};
use prism_core::ports::{Completion, KeyStore, Relay, Upstream, UpstreamError};
use prism_core::{Clock, JobId, JobKind, SystemClock, TenantId};
use prism_embedded::{Database, EmbeddedBackend, SqliteKeyStore};
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache, router};
use prism_lambda::strip_stage;
use serde_json::{Value, json};
use tokio::sync::mpsc;

const KEY: &str = "sk-prism-example";
const JOB: &str = "job_01m8fjznbgbn54wfrbn0pv7xk8";
/// The file part of `rest-post-file-multipart.json`: multi-byte UTF-8 and mixed line ends, the
/// bytes a text (non-binary) passage through API Gateway could alter.
const FILE_CONTENT: &str = concat!(
    r#"{"custom_id":"r-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Grüße aus Köln, 日本語 ✓ 🚀"}]}}"#,
    "\r\n",
    r#"{"custom_id":"r-2","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"naïve café"}]}}"#,
    "\n",
);
const BOUNDARY: &str = "----prism7MA4YWxkTrZu0gW";

/// Routes every model and answers nothing: these tests never reach a completion.
struct AnyModel;

#[async_trait]
impl Upstream for AnyModel {
    fn routes(&self, _model: &str) -> bool {
        true
    }

    async fn complete(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        _body: Bytes,
        _timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        Err(UpstreamError::NoRoute(model.into()))
    }

    async fn relay(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        _body: Bytes,
    ) -> Result<Relay, UpstreamError> {
        Err(UpstreamError::NoRoute(model.into()))
    }
}

type Api = BoxCloneSyncService<Request, Response<Body>, Infallible>;

/// `api`'s service (stage stripping in front of the router) over fresh embedded storage, with
/// the fixtures' key for tenant `acme`.
struct Harness {
    api: Api,
    /// The same router without the stage stripping.
    bare: axum::Router,
    deps: Deps,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("api.sqlite3")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now();
    let deps = EmbeddedBackend::new(
        &db,
        dir.path(),
        clock,
        Arc::new(AnyModel),
        Policies::default(),
    )
    .deps;
    let keys = SqliteKeyStore::new(db.clone());
    keys.insert(&ApiKeyRecord {
        id: IdGenerator::new().key_id(now),
        tenant: acme(),
        hash: hash_key(KEY),
        display_prefix: KEY.into(),
        created_at: now,
        revoked_at: None,
    })
    .await
    .unwrap();
    let state = AppState::new(
        deps.clone(),
        KeyCache::new(Arc::new(keys), DEFAULT_KEY_CACHE_TTL),
        HttpLimits::default(),
    );
    let bare = router(state);
    let api = ServiceBuilder::new()
        .map_request(strip_stage)
        .service(bare.clone());
    Harness {
        api: BoxCloneSyncService::new(api),
        bare,
        deps,
        _dir: dir,
    }
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn fixture_text(name: &str) -> String {
    let path = format!("{}/../../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The request `lambda_http` hands the service for a recorded event.
fn event(name: &str) -> Request {
    from_str(&fixture_text(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

async fn seed_job(h: &Harness) {
    let job = NewJob {
        id: JobId::parse(JOB).unwrap(),
        tenant: acme(),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: "gpt-4o-mini".into(),
        request: Bytes::from_static(br#"{"model":"gpt-4o-mini","messages":[]}"#),
        created_at: h.deps.clock.now(),
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    h.deps.jobs.create(&job, None).await.unwrap();
}

async fn call(h: &Harness, request: Request) -> (StatusCode, Value) {
    let response = h.api.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("{status}: {e}: {}", String::from_utf8_lossy(&body)));
    (status, json)
}

fn multipart_body() -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
         --{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"input.jsonl\"\r\n\
         Content-Type: application/jsonl\r\n\r\n{FILE_CONTENT}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

#[test]
fn rest_event_path_carries_the_stage_until_it_is_stripped() {
    let request = event("rest-post-async.json");
    assert_eq!(request.uri().path(), "/prod/v1/chat/completions");
    assert_eq!(request.raw_http_path(), "/v1/chat/completions");

    let request = strip_stage(request);

    assert_eq!(
        request.uri().to_string(),
        "https://k7x2p9q4rd.execute-api.us-east-1.amazonaws.com/v1/chat/completions"
    );
    assert_eq!(request.method(), "POST");
    assert_eq!(request.headers()["x-prism-async"], "true");
    assert_eq!(request.headers()["authorization"], format!("Bearer {KEY}"));
    assert_eq!(request.headers()["content-type"], "application/json");
    assert_eq!(
        request.body().as_ref(),
        br#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}"#
    );
    let Some(RequestContext::ApiGatewayV1(context)) = request.request_context_ref() else {
        panic!("expected a REST API context");
    };
    assert_eq!(context.stage.as_deref(), Some("prod"));
    assert_eq!(context.path.as_deref(), Some("/prod/v1/chat/completions"));
}

#[test]
fn stripping_keeps_the_query_string() {
    let mut event: Value = serde_json::from_str(&fixture_text("rest-get-job.json")).unwrap();
    event["path"] = json!("/v1/files");
    event["queryStringParameters"] = json!({"limit": "2"});
    event["multiValueQueryStringParameters"] = json!({"limit": ["2"]});

    let request = strip_stage(from_str(&event.to_string()).unwrap());

    assert_eq!(request.uri().path(), "/v1/files");
    assert_eq!(request.uri().query(), Some("limit=2"));
}

#[test]
fn the_root_of_the_stage_becomes_the_root() {
    let mut event: Value = serde_json::from_str(&fixture_text("rest-get-job.json")).unwrap();
    event["path"] = json!("/");
    event["resource"] = json!("/");

    let request = strip_stage(from_str(&event.to_string()).unwrap());

    assert_eq!(request.uri().path(), "/");
}

#[test]
fn function_url_events_still_parse_as_payload_2_and_pass_unchanged() {
    for name in ["function-url-post-async.json", "function-url-get-job.json"] {
        let request = event(name);
        let before = request.uri().clone();

        let request = strip_stage(request);

        assert!(
            matches!(
                request.request_context_ref(),
                Some(RequestContext::ApiGatewayV2(_))
            ),
            "{name}"
        );
        assert_eq!(request.uri(), &before, "{name}");
        assert!(request.uri().path().starts_with("/v1/"), "{name}");
    }
}

#[tokio::test]
async fn rest_event_with_stage_routes_like_one_without() {
    let h = harness().await;
    seed_job(&h).await;

    let (rest_status, rest_job) = call(&h, event("rest-get-job.json")).await;
    let (url_status, url_job) = call(&h, event("function-url-get-job.json")).await;

    assert_eq!(rest_status, StatusCode::OK, "{rest_job}");
    assert_eq!(url_status, StatusCode::OK, "{url_job}");
    assert_eq!(rest_job["id"], JOB);
    assert_eq!(rest_job, url_job);
}

#[tokio::test]
async fn without_the_stripping_the_stage_would_reach_the_router() {
    let h = harness().await;
    seed_job(&h).await;

    let response = h.bare.oneshot(event("rest-get-job.json")).await.unwrap();

    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rest_async_submission_is_accepted_like_one_through_the_function_url() {
    let h = harness().await;

    let (rest_status, rest_job) = call(&h, event("rest-post-async.json")).await;
    let (url_status, url_job) = call(&h, event("function-url-post-async.json")).await;

    assert_eq!(rest_status, StatusCode::ACCEPTED, "{rest_job}");
    assert_eq!(url_status, StatusCode::ACCEPTED, "{url_job}");
    assert_eq!(rest_job["status"], url_job["status"]);
    assert_eq!(rest_job["model"], "gpt-4o-mini");
}

#[tokio::test]
async fn multipart_rest_event_arrives_byte_exact_and_stores_the_file_byte_exact() {
    let h = harness().await;
    let request = event("rest-post-file-multipart.json");
    assert_eq!(request.body().as_ref(), multipart_body().as_slice());
    assert_eq!(
        request.headers()["content-type"],
        format!("multipart/form-data; boundary={BOUNDARY}")
    );

    let (status, file) = call(&h, request).await;

    assert_eq!(status, StatusCode::OK, "{file}");
    assert_eq!(file["bytes"], FILE_CONTENT.len());
    assert_eq!(file["filename"], "input.jsonl");
    assert_eq!(file["purpose"], "batch");
    let id = file["id"].as_str().unwrap();
    let download = lambda_http::http::Request::get(format!("/v1/files/{id}/content"))
        .header("authorization", format!("Bearer {KEY}"))
        .body(lambda_http::Body::Empty)
        .unwrap();
    let response = h.api.clone().oneshot(download).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    assert_eq!(content.as_ref(), FILE_CONTENT.as_bytes());
}

// ---------------------------------------------------------------------------------------------
// The streamed response on the wire
// ---------------------------------------------------------------------------------------------

/// What the fake Runtime API saw of the function's response.
#[derive(Debug)]
struct Posted {
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct FakeRuntimeApi {
    event: Arc<Mutex<Option<String>>>,
    posted: mpsc::UnboundedSender<Posted>,
}

/// The first `next` hands out the event; later ones wait forever (the child is killed then).
async fn next_invocation(State(api): State<FakeRuntimeApi>) -> Response<Body> {
    let event = api.event.lock().unwrap().take();
    let Some(event) = event else {
        return std::future::pending().await;
    };
    let deadline = SystemTime::now().duration_since(UNIX_EPOCH).unwrap() + Duration::from_secs(60);
    Response::builder()
        .header("lambda-runtime-aws-request-id", "req-1")
        .header(
            "lambda-runtime-deadline-ms",
            deadline.as_millis().to_string(),
        )
        .header(
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:us-east-1:123456789012:function:api",
        )
        .header("content-type", "application/json")
        .body(Body::from(event))
        .unwrap()
}

async fn record(
    State(api): State<FakeRuntimeApi>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let _ = api.posted.send(Posted {
        path: uri.path().to_owned(),
        headers,
        body,
    });
    StatusCode::ACCEPTED
}

const CHILD_TEST: &str = "child_serves_rest_events_with_the_streaming_runtime";

/// Not a test of its own: the body of the child process the next test starts, with
/// `AWS_LAMBDA_RUNTIME_API` pointing at its fake Runtime API. It serves until it is killed.
#[tokio::test]
#[ignore = "run as a child process by a_streamed_response_to_a_rest_event_has_the_json_prelude_and_eight_nul_bytes"]
async fn child_serves_rest_events_with_the_streaming_runtime() {
    if std::env::var("AWS_LAMBDA_RUNTIME_API").is_err() {
        return;
    }
    let h = harness().await;
    seed_job(&h).await;
    lambda_http::run_with_streaming_response(h.api.clone())
        .await
        .unwrap();
}

#[tokio::test]
async fn a_streamed_response_to_a_rest_event_has_the_json_prelude_and_eight_nul_bytes() {
    // GIVEN a fake Runtime API holding the recorded REST event, and the streaming runtime in a
    // child process (lambda_runtime reads its endpoint from the environment only)
    let (posted, mut responses) = mpsc::unbounded_channel();
    let api = FakeRuntimeApi {
        event: Arc::new(Mutex::new(Some(fixture_text("rest-get-job.json")))),
        posted,
    };
    let app = axum::Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
        .route("/2018-06-01/runtime/invocation/{id}/response", post(record))
        .route("/2018-06-01/runtime/invocation/{id}/error", post(record))
        .route("/2018-06-01/runtime/init/error", post(record))
        .with_state(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env("AWS_LAMBDA_RUNTIME_API", address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "api")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env_remove("AWS_LAMBDA_MAX_CONCURRENCY")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // WHEN the child answers the invocation
    let posted = tokio::time::timeout(Duration::from_secs(60), responses.recv()).await;
    let _ = child.kill();
    let _ = child.wait();
    let posted = posted
        .expect("the function answered within a minute")
        .unwrap();

    // THEN it streamed: JSON metadata, eight NUL bytes, then the body as the router wrote it
    assert_eq!(posted.path, "/2018-06-01/runtime/invocation/req-1/response");
    assert_eq!(
        posted.headers["lambda-runtime-function-response-mode"],
        "streaming"
    );
    assert_eq!(
        posted.headers["content-type"],
        "application/vnd.awslambda.http-integration-response"
    );
    const DELIMITER: &[u8] = &[0; 8];
    let split = posted
        .body
        .windows(DELIMITER.len())
        .position(|w| w == DELIMITER)
        .expect("a delimiter after the prelude");
    let prelude: Value = serde_json::from_slice(&posted.body[..split]).unwrap();
    assert_eq!(prelude["statusCode"], 200, "{prelude}");
    assert_eq!(prelude["headers"]["content-type"], "application/json");
    assert!(prelude["headers"]["x-request-id"].is_string(), "{prelude}");
    assert_eq!(prelude["cookies"], json!([]));
    let job: Value = serde_json::from_slice(&posted.body[split + DELIMITER.len()..]).unwrap();
    assert_eq!(job["id"], JOB);
}

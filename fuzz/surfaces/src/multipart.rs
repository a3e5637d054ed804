//! `POST /v1/files` through the real router over embedded storage (SQLite and a blob directory
//! in a temporary directory, default policies and limits): the multipart parser, the part-head
//! guard, the field rules and the upload's streaming checks. An input is the boundary on its
//! first line, then the body.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use lambda_http::tower::ServiceExt;
use prism_core::deps::Policies;
use prism_core::ids::IdGenerator;
use prism_core::keys::{ApiKeyRecord, hash_key};
use prism_core::ports::{Completion, KeyStore, Relay, Upstream, UpstreamError};
use prism_core::{Clock, SystemClock, TenantId};
use prism_embedded::{Database, EmbeddedBackend, SqliteKeyStore};
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache, router};
use serde_json::Value;

const KEY: &str = "sk-prism-fuzz";
const FALLBACK_BOUNDARY: &str = "----prism7MA4YWxkTrZu0gW";
/// Statuses an upload may answer: stored, refused, too large, over the body budget.
const ANSWERS: &[StatusCode] = &[
    StatusCode::OK,
    StatusCode::BAD_REQUEST,
    StatusCode::PAYLOAD_TOO_LARGE,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// Uploads never reach a completion.
struct NoUpstream;

#[async_trait]
impl Upstream for NoUpstream {
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

struct Harness {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    /// Kept for the process's life: the database and blobs live in it.
    _dir: tempfile::TempDir,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let router = runtime.block_on(async {
            let db = Database::open(&dir.path().join("fuzz.sqlite3")).expect("the database");
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let now = clock.now();
            let deps = EmbeddedBackend::new(
                &db,
                dir.path(),
                clock,
                Arc::new(NoUpstream),
                Policies::default(),
            )
            .deps;
            let keys = SqliteKeyStore::new(db.clone());
            keys.insert(&ApiKeyRecord {
                id: IdGenerator::new().key_id(now),
                tenant: TenantId::parse("fuzz").expect("a tenant"),
                hash: hash_key(KEY),
                display_prefix: KEY.into(),
                created_at: now,
                revoked_at: None,
            })
            .await
            .expect("the key");
            router(AppState::new(
                deps,
                KeyCache::new(Arc::new(keys), DEFAULT_KEY_CACHE_TTL),
                HttpLimits::default(),
            ))
        });
        Harness {
            runtime,
            router,
            _dir: dir,
        }
    })
}

pub fn multipart_upload(data: &[u8]) {
    let (boundary, body) = match data.iter().position(|&b| b == b'\n') {
        Some(nl) if nl <= 200 => (
            String::from_utf8_lossy(&data[..nl]).into_owned(),
            &data[nl + 1..],
        ),
        _ => (FALLBACK_BOUNDARY.to_owned(), data),
    };
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let h = harness();
    h.runtime.block_on(async {
        let request = Request::post("/v1/files")
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .header(header::CONTENT_LENGTH, body.len())
            .header(header::CONTENT_TYPE, content_type.as_str());
        let Ok(request) = request.body(Body::from(body.to_vec())) else {
            return; // Not a header value: no client can send it.
        };
        let (status, answer) = send(&h.router, request).await;
        assert!(
            ANSWERS.contains(&status),
            "an upload answered {status}: {answer}"
        );
        if status != StatusCode::OK {
            assert!(
                answer["error"]["message"].is_string() && answer["error"]["type"].is_string(),
                "a {status} not in OpenAI's shape: {answer}"
            );
            return;
        }
        let id = answer["id"].as_str().expect("a stored file has an id");
        assert_eq!(answer["purpose"], "batch");
        assert!(
            answer["filename"]
                .as_str()
                .is_some_and(|n| !n.is_empty() && n.len() <= 255)
        );
        assert!(
            answer["bytes"]
                .as_u64()
                .is_some_and(|n| n > 0 && n <= body.len() as u64)
        );
        // Deleted at once, so a long run keeps its disk flat.
        let delete = Request::delete(format!("/v1/files/{id}"))
            .header(header::AUTHORIZATION, format!("Bearer {KEY}"))
            .body(Body::empty())
            .expect("a delete request");
        let (status, answer) = send(&h.router, delete).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    });
}

async fn send(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router is infallible");
    let status = response.status();
    let bytes = to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("an answer under 1 MiB");
    let answer = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, answer)
}

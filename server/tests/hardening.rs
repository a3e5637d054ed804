//! Hostile and malformed clients against `prism serve`, over real sockets: every refusal is an
//! OpenAI-shaped JSON error with a sensible status (never a 5xx), headers Prism reads are parsed
//! strictly, and slow or greedy clients cannot hold the process's memory or connections.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::raw::{Raw, address, bearer, parse_response, post_raw, raw_get};
use support::{Env, Setup, chat_body, rfc3339_in, start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn job_count(env: &Env, path: &str) -> usize {
    let list: Value = env.get(&env.alpha, path).await.json().await.unwrap();
    list["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn a_non_ascii_idempotency_key_is_a_400_naming_the_header_and_creates_no_job() {
    let env = start(Setup::default()).await;
    let async_mode: &[u8] = b"true";
    let scheduled = json!({"scheduled_at": rfc3339_in(60_000), "request": chat_body("m", "hi")});
    for key in [&b"cl\xc3\xa9-1"[..], b"\xff\xfe", b"a b", b"", &[b'k'; 256]] {
        let answer = post_raw(
            &env,
            "/v1/chat/completions",
            &[("x-prism-async", async_mode), ("Idempotency-Key", key)],
            &chat_body("m", "hi"),
        )
        .await;
        let error = answer.openai_error(400, "async");
        assert_eq!(error["param"], "Idempotency-Key");
        assert_eq!(error["code"], "invalid_idempotency_key");
        let answer = post_raw(
            &env,
            "/v1/scheduled",
            &[("Idempotency-Key", key)],
            &scheduled,
        )
        .await;
        let error = answer.openai_error(400, "scheduled");
        assert_eq!(error["param"], "Idempotency-Key");
    }
    // Two keys are as ambiguous as a broken one.
    let answer = post_raw(
        &env,
        "/v1/scheduled",
        &[("Idempotency-Key", b"a"), ("Idempotency-Key", b"b")],
        &scheduled,
    )
    .await;
    answer.openai_error(400, "two keys");
    assert_eq!(job_count(&env, "/v1/async").await, 0);
    assert_eq!(job_count(&env, "/v1/scheduled").await, 0);
}

#[tokio::test]
async fn x_prism_async_accepts_true_or_false_in_any_case_and_refuses_anything_else() {
    let env = start(Setup::default()).await;
    let body = chat_body("m", "hi");
    for value in [&b"1"[..], b"yes", b"true, true", b"", b"tr\xc3\xbce"] {
        let answer = post_raw(
            &env,
            "/v1/chat/completions",
            &[("x-prism-async", value)],
            &body,
        )
        .await;
        let error = answer.openai_error(400, &String::from_utf8_lossy(value));
        assert_eq!(error["param"], "x-prism-async");
    }
    let repeated = post_raw(
        &env,
        "/v1/chat/completions",
        &[("x-prism-async", b"true"), ("x-prism-async", b"true")],
        &body,
    )
    .await;
    repeated.openai_error(400, "repeated");
    // Nothing ran: neither a job nor an upstream call.
    assert_eq!(job_count(&env, "/v1/async").await, 0);

    let send = |value: &'static str| {
        env.http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(&env.alpha)
            .header("x-prism-async", value)
            .json(&body)
            .send()
    };
    let sync = send("FALSE").await.unwrap();
    assert_eq!(sync.status(), 200);
    let completion: Value = sync.json().await.unwrap();
    assert_eq!(completion["object"], "chat.completion");
    assert_eq!(send(" True ").await.unwrap().status(), 202);
}

#[tokio::test]
async fn hostile_path_ids_answer_json_errors_never_plain_text_or_5xx() {
    let env = start(Setup::default()).await;
    let auth = bearer(&env.alpha);
    let long = "a".repeat(8_000);
    for id in [
        "%FF",
        "%00",
        "%C3%28",
        "..",
        "%2e%2e",
        long.as_str(),
        "job_%FF%FE",
    ] {
        for (method, template) in [
            ("GET", "/v1/async/{}"),
            ("DELETE", "/v1/async/{}"),
            ("GET", "/v1/scheduled/{}"),
            ("DELETE", "/v1/scheduled/{}"),
            ("GET", "/v1/files/{}"),
            ("GET", "/v1/files/{}/content"),
            ("DELETE", "/v1/files/{}"),
            ("GET", "/v1/batches/{}"),
            ("POST", "/v1/batches/{}/cancel"),
        ] {
            let target = template.replace("{}", id);
            let answer = raw_get(&env, method, &target, &auth).await;
            let what = format!("{method} {}", &target[..target.len().min(60)]);
            assert!(
                matches!(answer.status, 400 | 404),
                "{what}: {}",
                answer.status
            );
            answer.openai_error(answer.status, &what);
        }
    }
    let invalid = raw_get(&env, "GET", "/v1/async/%FF", &auth).await;
    assert_eq!(
        invalid.openai_error(400, "%FF")["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn bad_query_values_answer_400_json_errors() {
    let env = start(Setup::default()).await;
    let auth = bearer(&env.alpha);
    for target in [
        "/v1/async?limit=-1",
        "/v1/async?limit=abc",
        "/v1/async?limit=100000",
        "/v1/async?limit=99999999999999999999999",
        "/v1/async?after=%FF",
        "/v1/async?status=sideways",
        "/v1/scheduled?limit=0",
        "/v1/scheduled?after=job_%00",
        "/v1/files?limit=-1",
        "/v1/files?limit=abc",
        "/v1/files?limit=100000",
        "/v1/files?after=%FF",
        "/v1/files?order=sideways",
        "/v1/files?purpose=%FF",
        "/v1/batches?limit=abc",
        "/v1/batches?after=%FF",
    ] {
        raw_get(&env, "GET", target, &auth)
            .await
            .openai_error(400, target);
    }
}

#[tokio::test]
async fn every_authentication_failure_is_a_json_401() {
    let env = start(Setup::default()).await;
    let key = env.alpha.clone();
    for (what, auth) in [
        ("no header", String::new()),
        (
            "basic",
            "Authorization: Basic YWxhZGRpbjpvcGVuc2VzYW1l\r\n".into(),
        ),
        ("empty bearer", "Authorization: Bearer \r\n".into()),
        ("bearer alone", "Authorization: Bearer\r\n".into()),
        (
            "unknown key",
            "Authorization: Bearer sk-prism-nope\r\n".into(),
        ),
        ("not utf-8", "Authorization: Bearer \u{e9}\r\n".into()),
        (
            "two headers",
            format!("Authorization: Bearer {key}\r\nAuthorization: Bearer {key}\r\n"),
        ),
    ] {
        let answer = raw_get(&env, "GET", "/v1/async", &auth).await;
        assert_eq!(answer.openai_error(401, what)["code"], "invalid_api_key");
    }
    // The scheme is case-insensitive.
    for scheme in ["bearer", "BEARER"] {
        let answer = raw_get(
            &env,
            "GET",
            "/v1/async",
            &format!("Authorization: {scheme} {key}\r\n"),
        )
        .await;
        assert_eq!(answer.status, 200, "{scheme}");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let env = start(Setup::default()).await;
    let auth = bearer(&env.alpha);
    raw_get(&env, "DELETE", "/v1/chat/completions", &auth)
        .await
        .openai_error(405, "DELETE chat");
    raw_get(&env, "PUT", "/v1/files", &auth)
        .await
        .openai_error(405, "PUT files");
    raw_get(&env, "GET", "/v2/nothing", &auth)
        .await
        .openai_error(404, "unknown");
}

/// hyper refuses a request head larger than its read buffer (about 400 KB) itself, before any
/// service sees the request, and writes that 431 without a body (hyper's `on_parse_error` has no
/// hook for one). So this is the one refusal that cannot be JSON; it is still a 4xx and the
/// connection closes.
#[tokio::test]
async fn a_one_megabyte_header_is_refused_with_431_by_hyper_before_prism_sees_it() {
    let env = start(Setup::default()).await;
    let huge = format!("Authorization: Bearer {}\r\n", "k".repeat(1024 * 1024));
    let answer = raw_get(&env, "GET", "/v1/async", &huge).await;
    assert_eq!(answer.status, 431, "{answer:?}");
    // The server is unharmed.
    assert_eq!(env.get(&env.alpha, "/v1/async").await.status(), 200);
}

#[tokio::test]
async fn a_duplicated_json_key_is_one_400_naming_it_on_every_endpoint() {
    let env = start(Setup::default()).await;
    let chat = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"model":"other"}"#;
    let nested = br#"{"model":"m","messages":[{"role":"user","role":"system","content":"hi"}]}"#;
    let scheduled = format!(
        r#"{{"scheduled_at":"{}","request":{{"model":"m","messages":[{{"role":"user","content":"hi"}}],"temperature":1,"temperature":0}}}}"#,
        rfc3339_in(60_000)
    );
    let scheduled_twice = format!(
        r#"{{"scheduled_at":"{at}","scheduled_at":"{at}","request":{{"model":"m","messages":[{{"role":"user","content":"hi"}}]}}}}"#,
        at = rfc3339_in(60_000)
    );
    let batch = br#"{"input_file_id":"file-x","endpoint":"/v1/chat/completions","completion_window":"24h","endpoint":"/v1/chat/completions"}"#;
    for (what, path, headers, body, param) in [
        ("sync", "/v1/chat/completions", None, &chat[..], "model"),
        (
            "sync nested",
            "/v1/chat/completions",
            None,
            &nested[..],
            "messages[0].role",
        ),
        (
            "async",
            "/v1/chat/completions",
            Some("true"),
            &chat[..],
            "model",
        ),
        (
            "scheduled",
            "/v1/scheduled",
            None,
            scheduled.as_bytes(),
            "request.temperature",
        ),
        (
            "scheduled top",
            "/v1/scheduled",
            None,
            scheduled_twice.as_bytes(),
            "scheduled_at",
        ),
        ("batch", "/v1/batches", None, &batch[..], "endpoint"),
    ] {
        let mut request = env
            .http
            .post(env.url(path))
            .bearer_auth(&env.alpha)
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(value) = headers {
            request = request.header("x-prism-async", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{what}");
        let error: Value = response.json().await.unwrap();
        let error = &error["error"];
        assert_eq!(error["type"], "invalid_request_error", "{what}");
        assert_eq!(error["code"], "duplicate_key", "{what}: {error}");
        assert_eq!(error["param"], param, "{what}: {error}");
        let key = param.rsplit(['.', ']']).next().unwrap();
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains(&format!("'{key}'")),
            "{what}: {error}"
        );
    }
    assert_eq!(job_count(&env, "/v1/async").await, 0);
    assert_eq!(job_count(&env, "/v1/scheduled").await, 0);
    assert_eq!(env.mock.hits("m"), 0, "no upstream call");
}

#[tokio::test]
async fn a_filename_over_255_bytes_is_a_400_naming_file_and_nothing_is_stored() {
    let env = start(Setup::default()).await;
    let input = b"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}}\n";
    let too_long = format!("{}.jsonl", "f".repeat(250));
    let response = env
        .upload(
            &env.alpha,
            &[("purpose", "", b"batch"), ("file", &too_long, input)],
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "file");
    assert_eq!(error["error"]["code"], "filename_too_long");
    assert!(error["error"]["message"].as_str().unwrap().contains("255"));
    // A 4 MB filename is refused while its part header arrives, before multer holds it whole.
    let huge = "x".repeat(4 * 1024 * 1024);
    let response = env
        .upload(
            &env.alpha,
            &[("file", &huge, input), ("purpose", "", b"batch")],
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "file");
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("header"), "{message}");
    let list: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));
    // 255 bytes exactly is fine.
    let longest = format!("{}.jsonl", "f".repeat(249));
    let response = env
        .upload(
            &env.alpha,
            &[("purpose", "", b"batch"), ("file", &longest, input)],
        )
        .await;
    assert_eq!(response.status(), 200);
}

/// Reads until the server closes the connection; the time it took and what it sent.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(within, stream.read_to_end(&mut answer))
        .await
        .expect("the server kept the connection open")
        .ok();
    (started.elapsed(), answer)
}

#[tokio::test]
async fn a_connection_that_stops_mid_header_is_closed_within_the_header_timeout() {
    let env = start(Setup {
        http: "header_read_timeout = \"1s\"",
        ..Setup::default()
    })
    .await;
    let mut stream = TcpStream::connect(address(&env)).await.unwrap();
    stream
        .write_all(b"GET /v1/async HTTP/1.1\r\nHost: prism\r\nX-Slow: ")
        .await
        .unwrap();
    let (took, _) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    // An idle connection that never sends a byte is closed too.
    let mut idle = TcpStream::connect(address(&env)).await.unwrap();
    let (took, _) = until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "idle closed after {took:?}");
}

#[tokio::test]
async fn a_body_that_stalls_is_answered_408_and_closed_within_the_body_timeout() {
    let env = start(Setup {
        http: "body_read_timeout = \"1s\"",
        ..Setup::default()
    })
    .await;
    let mut stream = TcpStream::connect(address(&env)).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: prism\r\n{}Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"model\":",
                bearer(&env.alpha)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (took, answer) = until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    let answer = parse_response(&answer).expect("an answer before the close");
    assert_eq!(
        answer.openai_error(408, "stalled body")["code"],
        "request_timeout"
    );

    // The same for an upload, whose body streams to storage instead of being buffered.
    let mut upload = TcpStream::connect(address(&env)).await.unwrap();
    upload
        .write_all(
            format!(
                "POST /v1/files HTTP/1.1\r\nHost: prism\r\n{}Content-Type: multipart/form-data; boundary=XyZ\r\nContent-Length: 100000\r\n\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{{\"custom_id\"",
                bearer(&env.alpha)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let (took, answer) = until_closed(&mut upload, Duration::from_secs(5)).await;
    assert!(
        took < Duration::from_secs(3),
        "upload closed after {took:?}"
    );
    let answer = parse_response(&answer).expect("an answer before the close");
    assert_eq!(
        answer.openai_error(408, "stalled upload")["code"],
        "request_timeout"
    );
    let list: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(list["data"], json!([]));
}

#[tokio::test]
async fn past_the_inflight_body_budget_a_request_gets_503_with_retry_after() {
    let env = start(Setup {
        http: "max_inflight_body_bytes = 4096",
        ..Setup::default()
    })
    .await;
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "x".repeat(200)}]});
    // A slow client declares 4000 bytes and sends a few: they are reserved while it dawdles. If a
    // probe reaches the budget before the slow request does, the slow one is refused instead:
    // start over with a new slow client.
    let mut attempts = 0;
    let (slow, refused) = loop {
        attempts += 1;
        let mut slow = TcpStream::connect(address(&env)).await.unwrap();
        slow.write_all(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: prism\r\n{}Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{{\"model\":",
                bearer(&env.alpha)
            )
            .as_bytes(),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let probe = post_raw(&env, "/v1/chat/completions", &[], &body).await;
        if probe.status == 503 || attempts == 20 {
            break (slow, probe);
        }
    };
    let error = refused.openai_error(503, "over budget");
    assert_eq!(error["code"], "server_busy");
    assert_eq!(refused.header("retry-after"), Some("1"));
    // Once the slow client is gone, its bytes are free again.
    drop(slow);
    answer_within(
        "after the slow client left",
        Duration::from_secs(10),
        200,
        || post_raw(&env, "/v1/chat/completions", &[], &body),
    )
    .await;
}

/// Sends until the answer has `status`, for at most `within`.
async fn answer_within<F, Fut>(what: &str, within: Duration, status: u16, send: F) -> Raw
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Raw>,
{
    let deadline = Instant::now() + within;
    loop {
        let answer = send().await;
        if answer.status == status || Instant::now() > deadline {
            assert_eq!(answer.status, status, "{what}: {answer:?}");
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn past_max_connections_a_new_connection_waits_for_a_free_one() {
    let env = start(Setup {
        http: "max_connections = 2",
        ..Setup::default()
    })
    .await;
    let first = TcpStream::connect(address(&env)).await.unwrap();
    let second = TcpStream::connect(address(&env)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let env_ref = &env;
    let waiting = raw_get(env_ref, "GET", "/health", "");
    tokio::pin!(waiting);
    assert!(
        tokio::time::timeout(Duration::from_millis(700), &mut waiting)
            .await
            .is_err(),
        "a third connection was served while two were open"
    );
    // The connections ahead of it in the backlog (the suite's own pooled one included) close.
    drop(first);
    drop(second);
    let answer = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("served once a connection closed");
    assert_eq!(answer.status, 200);
}

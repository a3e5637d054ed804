//! Synchronous chat completions through `prism serve`: JSON, streamed, and the errors around them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use serde_json::{Value, json};
use support::{Setup, chat_body, start};

#[tokio::test]
async fn sync_completion_relays_the_upstream_json() {
    let env = start(Setup::default()).await;
    let response = env
        .chat(&env.alpha, chat_body("gpt-test", "hello there"), false)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert!(
        response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "hello there");
    assert_eq!(env.mock.hits("gpt-test"), 1);
}

#[tokio::test]
async fn streamed_completion_relays_chunks_and_ends_with_done() {
    let env = start(Setup::default()).await;
    let mut body = chat_body("gpt-stream", "one two three");
    body["stream"] = json!(true);
    let response = env.chat(&env.alpha, body, false).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"));
    let content: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(content, "one two three");
}

#[tokio::test]
async fn upstream_error_status_and_body_pass_through_unretried() {
    let env = start(Setup::default()).await;
    let response = env
        .chat(&env.alpha, chat_body("mock-400-sync", "x"), false)
        .await;
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "context_length_exceeded");
    let response = env
        .chat(&env.alpha, chat_body("mock-500-1-sync", "x"), false)
        .await;
    assert_eq!(
        response.status(),
        500,
        "the SDK retries 5xx itself; prism must not"
    );
    assert_eq!(env.mock.hits("mock-500-1-sync"), 1);
}

#[tokio::test]
async fn unroutable_model_is_a_400_model_not_found_before_any_upstream_call() {
    let env = start(Setup {
        models: r#"["gpt-*", "mock-*"]"#,
        ..Setup::default()
    })
    .await;
    for async_mode in [false, true] {
        let response = env
            .chat(&env.alpha, chat_body("claude-3", "x"), async_mode)
            .await;
        assert_eq!(response.status(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "model_not_found");
        assert_eq!(body["error"]["param"], "model");
    }
    assert_eq!(env.mock.hits("claude-3"), 0);
}

#[tokio::test]
async fn malformed_bodies_get_openai_shaped_400s() {
    let env = start(Setup::default()).await;
    for (body, code) in [
        ("{", "invalid_json"),
        (
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            "missing_required_parameter",
        ),
        (r#"{"model":"gpt-x"}"#, "missing_required_parameter"),
    ] {
        let response = env
            .http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(&env.alpha)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], code, "{body}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
}

#[tokio::test]
async fn a_body_with_invalid_utf8_in_an_unread_field_is_a_400_and_never_sent_upstream() {
    let env = start(Setup::default()).await;
    // The local Lambda front (cargo-lambda's function URL) answers a body that is not UTF-8 with
    // its own plain-text 500 before the function runs.
    if env.backend.is_lambda() {
        return;
    }
    let mut body =
        br#"{"model":"gpt-x","messages":[{"role":"user","content":"x"}],"tools":"o"#.to_vec();
    body.extend_from_slice(b"\xa8\x95\"}");
    for async_mode in [false, true] {
        let mut request = env
            .http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(&env.alpha)
            .header("content-type", "application/json")
            .body(body.clone());
        if async_mode {
            request = request.header("x-prism-async", "true");
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "invalid_json");
    }
    assert_eq!(env.mock.hits("gpt-x"), 0);
}

#[tokio::test]
async fn requests_without_a_valid_key_are_401() {
    let env = start(Setup::default()).await;
    let missing = env
        .http
        .post(env.url("/v1/chat/completions"))
        .json(&chat_body("gpt-x", "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    let wrong = env
        .chat("sk-prism-not-a-real-key", chat_body("gpt-x", "x"), true)
        .await;
    assert_eq!(wrong.status(), 401);
    let list = env.get("sk-prism-nope", "/v1/async").await;
    assert_eq!(list.status(), 401);
    assert_eq!(env.mock.hits("gpt-x"), 0);
}

#[tokio::test]
async fn bodies_over_the_configured_cap_are_413() {
    let env = start(Setup {
        http: "max_body_bytes = 2000",
        ..Setup::default()
    })
    .await;
    let big = "x".repeat(5000);
    for async_mode in [false, true] {
        let response = env
            .chat(&env.alpha, chat_body("gpt-x", &big), async_mode)
            .await;
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "request_too_large");
    }
    let small = env
        .chat(&env.alpha, chat_body("gpt-x", "fits"), false)
        .await;
    assert_eq!(small.status(), 200);
}

#[tokio::test]
async fn unknown_routes_are_openai_shaped_404s_and_health_needs_no_key() {
    let env = start(Setup::default()).await;
    let response = env.get(&env.alpha, "/v1/nothing-here").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
    for path in ["/health", "/ready"] {
        let r = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn a_buffered_call_past_the_sync_deadline_is_a_504_that_must_not_be_retried() {
    let env = start(Setup {
        http: "sync_deadline = \"1s\"",
        ..Setup::default()
    })
    .await;
    let response = env
        .chat(&env.alpha, chat_body("mock-slow-3000-deadline", "x"), false)
        .await;
    assert_eq!(response.status(), 504);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_timeout");
    // A streamed call is not buffered: it may take as long as the upstream needs.
    let mut streamed = chat_body("mock-slow-1500-streamed", "still here");
    streamed["stream"] = json!(true);
    let response = env.chat(&env.alpha, streamed, false).await;
    assert_eq!(response.status(), 200);
    assert!(response.text().await.unwrap().contains("[DONE]"));
}

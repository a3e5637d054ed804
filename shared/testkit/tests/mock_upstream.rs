//! Behaviour of the mock upstream as an HTTP client sees it: echoes, streams, every fault model,
//! and the counters tests rely on.

// Helpers here are test code too, but clippy only exempts `#[test]` bodies from these lints.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use prism_testkit::{MockUpstream, StatsSnapshot, spawn_mock_upstream};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn start() -> MockUpstream {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    spawn_mock_upstream(any_port).await.unwrap()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

fn chat_body(model: &str, text: &str) -> Value {
    json!({
        "model": model,
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": text},
        ],
    })
}

async fn post_chat(upstream: &MockUpstream, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/chat/completions", upstream.base_url()))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn error_of(response: reqwest::Response) -> Value {
    let body: Value = response.json().await.unwrap();
    body["error"].clone()
}

/// The `data:` payloads of an event stream, in order.
fn sse_data(body: &str) -> Vec<&str> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| event.strip_prefix("data: ").unwrap())
        .collect()
}

async fn wait_for_aborted(upstream: &MockUpstream, model: &str, expected: u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while upstream.aborted(model) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(upstream.aborted(model), expected);
}

#[tokio::test]
async fn echoes_last_user_message() {
    let upstream = start().await;
    let body = json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "user", "content": "not this one"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "hello there world"},
        ],
    });
    let response = post_chat(&upstream, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(request_id.starts_with("req_") && request_id.len() == 36);

    let completion: Value = response.json().await.unwrap();
    let id = completion["id"].as_str().unwrap();
    assert!(id.starts_with("chatcmpl-") && id.len() == 9 + 29);
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["created"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(completion["model"], "gpt-4o-mini");
    assert_eq!(completion["system_fingerprint"], Value::Null);
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["logprobs"], Value::Null);
    assert_eq!(
        choice["message"],
        json!({"role": "assistant", "content": "hello there world", "refusal": null})
    );
    assert_eq!(
        completion["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );
}

#[tokio::test]
async fn echoes_concatenated_text_parts() {
    let upstream = start().await;
    let body = json!({
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "look at "},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "text", "text": "this"},
        ]}],
    });
    let completion: Value = post_chat(&upstream, &body).await.json().await.unwrap();
    assert_eq!(
        completion["choices"][0]["message"]["content"],
        "look at this"
    );
}

#[tokio::test]
async fn streams_chunks_and_done() {
    let upstream = start().await;
    let mut body = chat_body("gpt-4o-mini", "one two  three");
    body["stream"] = json!(true);
    let response = post_chat(&upstream, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let data = sse_data(&text);

    assert_eq!(data.last(), Some(&"[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|payload| serde_json::from_str(payload).unwrap())
        .collect();
    // role, three words, stop
    assert_eq!(chunks.len(), 5);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert_eq!(chunk["created"], chunks[0]["created"]);
        assert_eq!(chunk["model"], "gpt-4o-mini");
        assert!(chunk.get("usage").is_none());
    }
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let words: Vec<&str> = chunks[1..4]
        .iter()
        .map(|chunk| chunk["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(words, ["one ", "two  ", "three"]);
    let last = &chunks[4]["choices"][0];
    assert_eq!(last["delta"], json!({}));
    assert_eq!(last["finish_reason"], "stop");
}

#[tokio::test]
async fn streams_a_usage_chunk_when_asked() {
    let upstream = start().await;
    let mut body = chat_body("gpt-4o-mini", "a b");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let text = post_chat(&upstream, &body).await.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last(), Some(&"[DONE]"));
    let usage: Value = serde_json::from_str(data[data.len() - 2]).unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(
        usage["usage"],
        json!({"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6})
    );
    let stop: Value = serde_json::from_str(data[data.len() - 3]).unwrap();
    assert_eq!(stop["choices"][0]["finish_reason"], "stop");
    assert_eq!(stop["usage"], Value::Null);
}

#[tokio::test]
async fn rate_limits_first_n_calls_then_answers() {
    let upstream = start().await;
    let model = "mock-429-2-rate-limits-first-n";
    for _ in 0..2 {
        let response = post_chat(&upstream, &chat_body(model, "hi")).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()["retry-after"], "1");
        assert!(response.headers().get("retry-after-ms").is_none());
        let error = error_of(response).await;
        assert_eq!(error["code"], "rate_limit_exceeded");
        assert_eq!(error["type"], "requests");
        assert_eq!(error["param"], Value::Null);
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .starts_with("Rate limit reached")
        );
    }
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.hits(model), 3);
}

#[tokio::test]
async fn rate_limits_with_a_millisecond_hint() {
    let upstream = start().await;
    let model = "mock-429ms-1-ms-hint";
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after-ms"], "200");
    assert!(response.headers().get("retry-after").is_none());
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn quota_errors_never_lift() {
    let upstream = start().await;
    for _ in 0..3 {
        let response = post_chat(&upstream, &chat_body("mock-quota-never-lifts", "hi")).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        let error = error_of(response).await;
        assert_eq!(error["code"], "insufficient_quota");
        assert_eq!(error["type"], "insufficient_quota");
    }
}

#[tokio::test]
async fn server_errors_first_n_calls_then_answers() {
    let upstream = start().await;
    let model = "mock-500-1-server-errors";
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let error = error_of(response).await;
    assert_eq!(error["type"], "server_error");
    assert_eq!(error["code"], Value::Null);
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn context_length_errors_are_bad_requests() {
    let upstream = start().await;
    let response = post_chat(&upstream, &chat_body("mock-400-context", "hi")).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        error_of(response).await,
        json!({
            "message": "This model's maximum context length is 10 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        })
    );
}

#[tokio::test]
async fn slow_models_answer_after_the_delay() {
    let upstream = start().await;
    let mut body = chat_body("mock-slow-200-answers", "late reply");
    let started = Instant::now();
    let completion: Value = post_chat(&upstream, &body).await.json().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(completion["choices"][0]["message"]["content"], "late reply");

    body["stream"] = json!(true);
    let started = Instant::now();
    let text = post_chat(&upstream, &body).await.text().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(sse_data(&text).last(), Some(&"[DONE]"));
    assert_eq!(upstream.aborted("mock-slow-200-answers"), 0);
}

#[tokio::test]
async fn counts_aborted_requests_when_client_disconnects() {
    let upstream = start().await;
    let model = "mock-hang-aborted";
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let error = impatient
        .post(format!("{}/chat/completions", upstream.base_url()))
        .json(&chat_body(model, "hi"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_timeout());
    assert_eq!(upstream.hits(model), 1);
    wait_for_aborted(&upstream, model, 1).await;
}

#[tokio::test]
async fn counts_aborted_slow_requests_too() {
    let upstream = start().await;
    let model = "mock-slow-5000-aborted";
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let result = impatient
        .post(format!("{}/chat/completions", upstream.base_url()))
        .json(&chat_body(model, "hi"))
        .send()
        .await;
    assert!(result.is_err());
    wait_for_aborted(&upstream, model, 1).await;
}

#[tokio::test]
async fn counts_aborted_drips_when_client_leaves_mid_body() {
    let upstream = start().await;
    let model = "mock-drip-100-aborted";
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let response = impatient
        .post(format!("{}/chat/completions", upstream.base_url()))
        .json(&chat_body(model, "a reply long enough to need many pieces"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.is_err());
    wait_for_aborted(&upstream, model, 1).await;
}

#[tokio::test]
async fn truncated_body_is_an_error_for_the_client() {
    let upstream = start().await;
    let response = post_chat(&upstream, &chat_body("mock-truncated-t1", "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    let declared: usize = response.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(declared > 0);
    let error = response.bytes().await.unwrap_err();
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    // The cut is deliberate, so it must not show up as a client abort.
    assert_eq!(upstream.aborted("mock-truncated-t1"), 0);
}

#[tokio::test]
async fn sse_cut_breaks_the_stream_after_the_role_chunk() {
    let upstream = start().await;
    let mut body = chat_body("mock-sse-cut-t1", "some words here");
    body["stream"] = json!(true);
    let mut response = post_chat(&upstream, &body).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => received.extend_from_slice(&chunk),
            Ok(None) => panic!("stream ended cleanly: {received:?}"),
            Err(error) => break error,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    let text = String::from_utf8(received).unwrap();
    let (role_event, rest) = text.split_once("\n\n").unwrap();
    let role: Value = serde_json::from_str(role_event.strip_prefix("data: ").unwrap()).unwrap();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert!(rest.starts_with("data: {") && !rest.contains("\n\n"));
}

#[tokio::test]
async fn sse_cut_without_stream_behaves_like_truncated() {
    let upstream = start().await;
    let response = post_chat(&upstream, &chat_body("mock-sse-cut-plain", "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.bytes().await.is_err());
}

#[tokio::test]
async fn bad_json_is_served_as_is() {
    let upstream = start().await;
    let response = post_chat(&upstream, &chat_body("mock-bad-json-t1", "hi")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"id": "chatcmpl-broken", "choices": ["#
    );
}

#[tokio::test]
async fn drip_delivers_a_valid_body_in_slow_pieces() {
    let upstream = start().await;
    let mut response = post_chat(&upstream, &chat_body("mock-drip-5-json", "drip drop")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let started = Instant::now();
    let mut pieces = 0;
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        pieces += 1;
        body.extend_from_slice(&chunk);
    }
    assert!(pieces > 5, "{pieces} pieces");
    assert!(started.elapsed() >= Duration::from_millis(5 * 5));
    let completion: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(completion["choices"][0]["message"]["content"], "drip drop");
    assert_eq!(upstream.aborted("mock-drip-5-json"), 0);
}

#[tokio::test]
async fn drip_streams_chunks_with_pauses() {
    let upstream = start().await;
    let mut body = chat_body("mock-drip-50-sse", "a b c");
    body["stream"] = json!(true);
    let started = Instant::now();
    let text = post_chat(&upstream, &body).await.text().await.unwrap();
    // role, three words, stop, done: five pauses between six events
    assert!(started.elapsed() >= Duration::from_millis(250));
    let data = sse_data(&text);
    assert_eq!(data.len(), 6);
    assert_eq!(data.last(), Some(&"[DONE]"));
}

#[tokio::test]
async fn unparsable_bodies_are_bad_requests_counted_under_no_model() {
    let upstream = start().await;
    let response = client()
        .post(format!("{}/chat/completions", upstream.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.headers().contains_key("x-request-id"));
    let error = error_of(response).await;
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(upstream.hits(""), 1);
}

#[tokio::test]
async fn stats_report_hits_per_model() {
    let upstream = start().await;
    for model in ["gpt-4o-mini", "gpt-4o-mini", "mock-400-stats"] {
        post_chat(&upstream, &chat_body(model, "hi")).await;
    }
    let stats: StatsSnapshot = client()
        .get(format!("http://{}/_stats", upstream.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats.requests["gpt-4o-mini"], 2);
    assert_eq!(stats.requests["mock-400-stats"], 1);
    assert_eq!(stats.aborted["gpt-4o-mini"], 0);
    assert_eq!(stats, upstream.stats());
    assert_eq!(upstream.hits("gpt-4o-mini"), 2);
    assert_eq!(upstream.hits("never-asked"), 0);
}

#[tokio::test]
async fn reset_clears_the_counters() {
    let upstream = start().await;
    post_chat(&upstream, &chat_body("gpt-4o-mini", "hi")).await;
    let response = client()
        .post(format!("http://{}/_reset", upstream.addr))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert_eq!(upstream.stats(), StatsSnapshot::default());
    // Call numbers restart too, so a rate-limit model limits again.
    let model = "mock-429-1-reset";
    post_chat(&upstream, &chat_body(model, "hi")).await;
    upstream.reset();
    let response = post_chat(&upstream, &chat_body(model, "hi")).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn lists_models() {
    let upstream = start().await;
    let list: Value = client()
        .get(format!("{}/models", upstream.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["object"], "list");
    let data = list["data"].as_array().unwrap();
    assert!(!data.is_empty());
    assert!(data.iter().all(|model| model["object"] == "model"));
}

#[tokio::test]
async fn base_url_points_at_the_v1_root() {
    let upstream = start().await;
    assert_eq!(upstream.base_url(), format!("http://{}/v1", upstream.addr));
    assert_ne!(upstream.addr.port(), 0);
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let upstream = start().await;
    let base_url = upstream.base_url();
    upstream.shutdown().await;
    let fresh = reqwest::Client::new();
    let error = fresh
        .post(format!("{base_url}/chat/completions"))
        .json(&chat_body("gpt-4o-mini", "hi"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}

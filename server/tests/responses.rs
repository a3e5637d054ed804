//! The Responses API through `prism serve`: `POST /v1/responses` relayed (JSON and SSE), and
//! background mode on the job store: create, retrieve, cancel, tenancy, a recorded stream
//! resumed with `starting_after`, and a kill -9 in the middle of a background response.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use support::{AFTER_A_CRASH, Env, Setup, start};

const SOON: Duration = Duration::from_secs(15);

impl Env {
    async fn response(&self, key: &str, id: &str) -> reqwest::Response {
        self.get(key, &format!("/v1/responses/{id}")).await
    }

    async fn wait_for_response(&self, id: &str, statuses: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let response = self.response(&self.alpha, id).await;
            assert_eq!(response.status(), 200, "GET response {id}");
            let object: Value = response.json().await.unwrap();
            if statuses.iter().any(|s| object["status"] == *s) {
                return object;
            }
            assert!(
                Instant::now() < deadline,
                "response {id} still {} after {within:?}",
                object["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn create_background(&self, body: Value) -> Value {
        let response = self.post(&self.alpha, "/v1/responses", &body).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }
}

/// The `data:` of each SSE event in `text`.
fn sse_data(text: &str) -> Vec<Value> {
    text.split("\n\n")
        .filter_map(|event| event.lines().find_map(|l| l.strip_prefix("data: ")))
        .map(|data| serde_json::from_str(data).unwrap())
        .collect()
}

fn deltas(events: &[Value]) -> String {
    events
        .iter()
        .filter(|e| e["type"] == "response.output_text.delta")
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

fn output_text(response: &Value) -> &str {
    response["output"][0]["content"][0]["text"]
        .as_str()
        .unwrap()
}

#[tokio::test]
async fn responses_are_relayed_as_json_and_as_typed_events() {
    let env = start(Setup::default()).await;
    let body = json!({"model": "gpt-resp", "input": "hello there"});
    let response = env.post(&env.alpha, "/v1/responses", &body).await;
    assert_eq!(response.status(), 200);
    let object: Value = response.json().await.unwrap();
    assert_eq!(object["object"], "response");
    assert_eq!(object["status"], "completed");
    assert_eq!(output_text(&object), "hello there");

    let streamed = json!({"model": "gpt-resp", "input": "one two three", "stream": true});
    let response = env.post(&env.alpha, "/v1/responses", &streamed).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events[0]["type"], "response.created");
    assert_eq!(events.last().unwrap()["type"], "response.completed");
    assert_eq!(deltas(&events), "one two three");
    assert_eq!(env.mock.hits("gpt-resp"), 2);
}

#[tokio::test]
async fn background_response_is_queued_then_completes_under_prisms_id() {
    let env = start(Setup::default()).await;
    let created = env
        .create_background(json!({"model": "gpt-bg", "input": "keep this", "background": true}))
        .await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(created["object"], "response");
    assert_eq!(created["status"], "queued");
    assert_eq!(created["background"], true);
    assert_eq!(created["output"], json!([]));

    let done = env.wait_for_response(id, &["completed"], SOON).await;
    assert_eq!(done["id"], id);
    assert_eq!(done["background"], true);
    assert_eq!(output_text(&done), "keep this");
    assert_eq!(env.mock.hits("gpt-bg"), 1);
}

#[tokio::test]
async fn background_response_fails_with_the_upstream_error() {
    let env = start(Setup::default()).await;
    let created = env
        .create_background(json!({"model": "mock-400-bg", "input": "x", "background": true}))
        .await;
    let failed = env
        .wait_for_response(created["id"].as_str().unwrap(), &["failed"], SOON)
        .await;
    assert_eq!(failed["error"]["code"], "context_length_exceeded");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context length")
    );
}

#[tokio::test]
async fn cancel_is_idempotent_and_another_tenants_response_is_a_404() {
    let env = start(Setup::default()).await;
    let created = env
        .create_background(json!({"model": "mock-hang-bg", "input": "x", "background": true}))
        .await;
    let id = created["id"].as_str().unwrap();
    let cancel = format!("/v1/responses/{id}/cancel");

    assert_eq!(env.response(&env.beta, id).await.status(), 404);
    assert_eq!(env.post(&env.beta, &cancel, &json!({})).await.status(), 404);

    for _ in 0..2 {
        let response = env.post(&env.alpha, &cancel, &json!({})).await;
        assert_eq!(response.status(), 200);
        let object: Value = response.json().await.unwrap();
        assert_eq!(object["status"], "cancelled");
        assert_eq!(object["id"], id);
    }
    let object: Value = env.response(&env.alpha, id).await.json().await.unwrap();
    assert_eq!(object["status"], "cancelled");
    assert_eq!(
        env.response(&env.alpha, "resp_00000000000000000000000000")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn cancelling_a_completed_response_is_a_conflict() {
    let env = start(Setup::default()).await;
    let created = env
        .create_background(json!({"model": "gpt-done", "input": "x", "background": true}))
        .await;
    let id = created["id"].as_str().unwrap();
    env.wait_for_response(id, &["completed"], SOON).await;
    let response = env
        .post(
            &env.alpha,
            &format!("/v1/responses/{id}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn an_interrupted_background_stream_resumes_after_the_last_event_seen() {
    let env = start(Setup::default()).await;
    let text = "a background stream that a client leaves and comes back to";
    let body =
        json!({"model": "mock-drip-150-bg", "input": text, "background": true, "stream": true});
    let response = env.post(&env.alpha, "/v1/responses", &body).await;
    assert_eq!(response.status(), 200);
    // Read until three events arrived, then go away mid-stream.
    let mut seen = String::new();
    let mut chunks = response.bytes_stream();
    while sse_data(&seen).len() < 3 {
        let chunk = chunks.next().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(chunks);
    let complete_events = seen.rfind("\n\n").unwrap();
    let first = sse_data(&seen[..complete_events]);
    let id = first[0]["response"]["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("resp_"), "{id}");
    let last_seen = first.last().unwrap()["sequence_number"].as_u64().unwrap();

    let resumed = env
        .get(
            &env.alpha,
            &format!("/v1/responses/{id}?stream=true&starting_after={last_seen}"),
        )
        .await;
    assert_eq!(resumed.status(), 200);
    let rest = sse_data(&resumed.text().await.unwrap());
    let all: Vec<Value> = first.iter().chain(rest.iter()).cloned().collect();
    for (i, event) in all.iter().enumerate() {
        assert_eq!(
            event["sequence_number"],
            json!(i),
            "no event lost or repeated"
        );
    }
    assert_eq!(all.last().unwrap()["type"], "response.completed");
    assert_eq!(deltas(&all), text);

    let done = env.wait_for_response(&id, &["completed"], SOON).await;
    assert_eq!(output_text(&done), text);
    // A replay from the start gives the whole recorded stream again.
    let replay = env
        .get(&env.alpha, &format!("/v1/responses/{id}?stream=true"))
        .await;
    assert_eq!(sse_data(&replay.text().await.unwrap()), all);
    assert_eq!(env.mock.hits("mock-drip-150-bg"), 1);
}

#[tokio::test]
async fn a_stream_is_only_resumable_for_a_response_created_with_stream() {
    let env = start(Setup::default()).await;
    let created = env
        .create_background(json!({"model": "gpt-plain", "input": "x", "background": true}))
        .await;
    let id = created["id"].as_str().unwrap();
    let response = env
        .get(&env.alpha, &format!("/v1/responses/{id}?stream=true"))
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn background_response_completes_after_kill_9_during_its_upstream_call() {
    let mut env = start(Setup::default()).await;
    let created = env
        .create_background(
            json!({"model": "mock-slow-1500-crash", "input": "survive", "background": true}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_owned();
    env.wait_for_response(&id, &["in_progress"], SOON).await;
    env.kill_server().await;
    env.start_server().await;
    let done = env
        .wait_for_response(&id, &["completed", "failed"], AFTER_A_CRASH)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(output_text(&done), "survive");
}

#[tokio::test]
async fn a_recorded_stream_cut_by_kill_9_ends_failed_with_a_stated_reason() {
    let mut env = start(Setup::default()).await;
    let body = json!({"model": "mock-drip-300-crash", "input": "one two three four five six seven eight",
                      "background": true, "stream": true});
    let response = env.post(&env.alpha, "/v1/responses", &body).await;
    let mut seen = String::new();
    let mut chunks = response.bytes_stream();
    while sse_data(&seen).len() < 4 {
        let chunk = chunks.next().await.unwrap().unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(chunks);
    let id = sse_data(&seen)[0]["response"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.kill_server().await;
    env.start_server().await;
    let done = env
        .wait_for_response(&id, &["completed", "failed"], AFTER_A_CRASH)
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "stream_interrupted");
    // What was recorded before the crash is still there to read, in order.
    let replay = env
        .get(&env.alpha, &format!("/v1/responses/{id}?stream=true"))
        .await;
    let events = sse_data(&replay.text().await.unwrap());
    assert!(events.len() >= 4);
    for (i, event) in events.iter().enumerate() {
        assert_eq!(event["sequence_number"], json!(i));
    }
}

#[tokio::test]
async fn a_replayed_idempotency_key_answers_the_same_background_response() {
    let env = start(Setup::default()).await;
    let body = json!({"model": "gpt-idem", "input": "once", "background": true});
    let create = || async {
        let response = env
            .http
            .post(env.url("/v1/responses"))
            .bearer_auth(&env.alpha)
            .header("Idempotency-Key", "resp-key-1")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()
    };
    let first = create().await;
    let second = create().await;
    assert_eq!(first["id"], second["id"]);
    env.wait_for_response(first["id"].as_str().unwrap(), &["completed"], SOON)
        .await;
    assert_eq!(env.mock.hits("gpt-idem"), 1);
}

#[tokio::test]
async fn a_background_stream_whose_upstream_fails_ends_with_response_failed() {
    let env = start(Setup::default()).await;
    let body =
        json!({"model": "mock-400-stream", "input": "x", "background": true, "stream": true});
    let response = env.post(&env.alpha, "/v1/responses", &body).await;
    assert_eq!(response.status(), 200);
    let events = sse_data(&response.text().await.unwrap());
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["type"], "response.failed");
    assert_eq!(events[0]["sequence_number"], 0);
    assert_eq!(events[0]["response"]["status"], "failed");
    assert_eq!(
        events[0]["response"]["error"]["code"],
        "context_length_exceeded"
    );
}

/// A streamed background response whose provider stops sending, before its head (`mock-hang`)
/// or between two events (`mock-drip` with a minute's pause): the worker gives up after one
/// attempt timeout without an event and fails the response with `upstream_timeout`, so its
/// lease is no longer renewed and its stream ends. Without that bound the worker waits forever,
/// its message kept hidden beside it, and the response stays `in_progress`.
#[tokio::test]
async fn a_streamed_background_response_whose_upstream_hangs_fails_within_the_attempt_timeout() {
    let env = start(Setup {
        workers: "upstream_timeout = \"2s\"",
        ..Setup::default()
    })
    .await;
    for model in ["mock-hang-bg-stream", "mock-drip-60000-bg-stream"] {
        let body = json!({"model": model, "input": "x", "background": true, "stream": true});
        let response = env.post(&env.alpha, "/v1/responses", &body).await;
        assert_eq!(response.status(), 200);
        let text = tokio::time::timeout(SOON, response.text())
            .await
            .unwrap_or_else(|_| panic!("{model}: the stream still open after {SOON:?}"))
            .unwrap();
        let events = sse_data(&text);
        let last = events.last().unwrap();
        assert_eq!(last["type"], "response.failed", "{model}: {events:?}");
        assert_eq!(
            last["response"]["error"]["code"], "upstream_timeout",
            "{model}: {last}"
        );
        let id = last["response"]["id"].as_str().unwrap();
        let stored = env.wait_for_response(id, &["failed"], SOON).await;
        assert_eq!(stored["error"]["code"], "upstream_timeout", "{stored}");
        assert_eq!(env.mock.hits(model), 1, "{model}: one call, not retried");
    }
}

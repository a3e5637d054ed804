//! The endpoints beside chat completions through `prism serve`: `GET /v1/models`, and
//! embeddings, completions, moderations and responses sync, async, scheduled and as batches.
//! Runs on every backend (`PRISM_TEST_BACKEND`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};
use support::{Env, Setup, rfc3339_in, start};

const SOON: Duration = Duration::from_secs(60);

/// $2 per million input tokens, $4 per million output tokens (half that at the batch tier, which
/// gateway batches do not bill at): a cost in microdollars is `2 × input + 4 × output`.
const PRICES: &str = r#"
[[prices]]
model = "*priced*"
input = 2
output = 4
batch = { input = 1, output = 2 }
"#;

/// Microdollars as the USD decimal string the API shows.
fn usd(micros: u64) -> String {
    let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The input and output tokens of a Responses object, in the Responses API's names.
fn response_tokens(response: &Value) -> (u64, u64) {
    let usage = &response["usage"];
    let (input, output) = (
        usage["input_tokens"].as_u64().unwrap(),
        usage["output_tokens"].as_u64().unwrap(),
    );
    assert!(input > 0 && output > 0, "{response}");
    (input, output)
}

async fn post_async(env: &Env, path: &str, body: &Value) -> reqwest::Response {
    env.http
        .post(env.url(path))
        .bearer_auth(&env.alpha)
        .header("x-prism-async", "true")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn ids(list: &Value) -> Vec<&str> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn models_lists_literal_names_and_what_the_provider_serves_under_its_globs() {
    let env = start(Setup {
        models: r#"["house-model", "text-embedding-*", "mock-*"]"#,
        ..Setup::default()
    })
    .await;
    let response = env.get(&env.alpha, "/v1/models").await;
    assert_eq!(response.status(), 200);
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["object"], "list");
    // The mock lists gpt-4o too, but no pattern routes it: it is not listed.
    assert_eq!(
        ids(&list),
        [
            "house-model",
            "text-embedding-3-small",
            "mock-echo",
            "mock-slow-100",
            "mock-429-1",
            "mock-hang"
        ]
    );
    assert_eq!(list["data"][0]["object"], "model");
    assert_eq!(list["data"][0]["owned_by"], "mock");
    assert_eq!(list["data"][1]["owned_by"], "prism-testkit");

    let one: Value = env
        .get(&env.alpha, "/v1/models/text-embedding-3-small")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], "text-embedding-3-small");
    assert_eq!(one["created"], 1_700_000_000);

    let missing = env.get(&env.alpha, "/v1/models/gpt-4o").await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["code"], "model_not_found");
    assert_eq!(error["error"]["param"], "model");
}

#[tokio::test]
async fn embeddings_relay_deterministic_vectors_as_floats_or_base64() {
    let env = start(Setup::default()).await;
    let body =
        json!({"model": "text-embedding-3-small", "input": ["alpha", "beta"], "dimensions": 4});
    let first: Value = env
        .post(&env.alpha, "/v1/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["object"], "list");
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["data"][0]["embedding"].as_array().unwrap().len(), 4);
    assert_ne!(first["data"][0]["embedding"], first["data"][1]["embedding"]);
    let again: Value = env
        .post(&env.alpha, "/v1/embeddings", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["data"], again["data"]);

    let mut encoded = body.clone();
    encoded["encoding_format"] = json!("base64");
    let encoded: Value = env
        .post(&env.alpha, "/v1/embeddings", &encoded)
        .await
        .json()
        .await
        .unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded["data"][1]["embedding"].as_str().unwrap())
        .unwrap();
    let floats: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect();
    let plain: Vec<f64> = first["data"][1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(floats, plain);
    assert_eq!(env.mock.hits("text-embedding-3-small"), 3);
}

#[tokio::test]
async fn each_endpoint_refuses_what_its_own_rules_forbid_before_any_upstream_call() {
    let env = start(Setup::default()).await;
    for (path, body, code, param) in [
        (
            "/v1/embeddings",
            json!({"model": "e"}),
            "missing_required_parameter",
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "e", "input": []}),
            "empty_array",
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"model": "e", "input": "x", "stream": true}),
            "streaming_unsupported",
            "stream",
        ),
        (
            "/v1/embeddings",
            json!({"model": "e", "input": "x", "encoding_format": "hex"}),
            "invalid_value",
            "encoding_format",
        ),
        (
            "/v1/completions",
            json!({"model": "e"}),
            "missing_required_parameter",
            "prompt",
        ),
        (
            "/v1/moderations",
            json!({"model": "e"}),
            "missing_required_parameter",
            "input",
        ),
        (
            "/v1/embeddings",
            json!({"input": "x"}),
            "missing_required_parameter",
            "model",
        ),
    ] {
        for async_mode in [false, true] {
            let response = if async_mode {
                post_async(&env, path, &body).await
            } else {
                env.post(&env.alpha, path, &body).await
            };
            assert_eq!(response.status(), 400, "{path} {body}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["code"], code, "{path} {body}");
            assert_eq!(error["error"]["param"], param, "{path} {body}");
        }
    }
    assert!(env.mock.stats().requests.is_empty());
}

#[tokio::test]
async fn completions_and_moderations_relay_json_and_completions_stream() {
    let env = start(Setup::default()).await;
    let completion: Value = env
        .post(
            &env.alpha,
            "/v1/completions",
            &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say this"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(completion["object"], "text_completion");
    assert_eq!(completion["choices"][0]["text"], "say this");

    let streamed = env
        .post(
            &env.alpha,
            "/v1/completions",
            &json!({"model": "gpt-3.5-turbo-instruct", "prompt": "say this", "stream": true}),
        )
        .await;
    assert!(
        streamed.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = streamed.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // No model: routed as OpenAI's default moderation model, which the mock answers.
    let moderation: Value = env
        .post(
            &env.alpha,
            "/v1/moderations",
            &json!({"input": ["I will kill the process", "hello"]}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(moderation["model"], "omni-moderation-latest");
    assert_eq!(moderation["results"][0]["flagged"], true);
    assert_eq!(moderation["results"][1]["flagged"], false);
}

#[tokio::test]
async fn an_async_embeddings_job_retries_faults_and_its_result_is_the_embedding_list() {
    let env = start(Setup::default()).await;
    // The mock fails the first call with a 500: the job retries like a chat job.
    let response = post_async(
        &env,
        "/v1/embeddings",
        &json!({"model": "mock-500-1-embed", "input": "hello world", "dimensions": 3}),
    )
    .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["endpoint"], "/v1/embeddings");
    let id = job["id"].as_str().unwrap();
    let done = env
        .wait_for(&env.alpha, id, &["completed", "failed"], SOON)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["endpoint"], "/v1/embeddings");
    assert_eq!(done["result"]["object"], "list");
    assert_eq!(
        done["result"]["data"][0]["embedding"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(env.mock.hits("mock-500-1-embed"), 2);
}

#[tokio::test]
async fn a_scheduled_job_calls_the_endpoint_it_names() {
    let env = start(Setup::default()).await;
    let body = json!({
        "scheduled_at": rfc3339_in(0),
        "endpoint": "/v1/moderations",
        "request": {"model": "omni-moderation-latest", "input": "kill"},
    });
    let response = env.post(&env.alpha, "/v1/scheduled", &body).await;
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["endpoint"], "/v1/moderations");
    let id = job["id"].as_str().unwrap();
    let done = env
        .wait_for(&env.alpha, id, &["completed", "failed"], SOON)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["results"][0]["flagged"], true);

    let unknown = env
        .post(
            &env.alpha,
            "/v1/scheduled",
            &json!({"scheduled_at": rfc3339_in(0), "endpoint": "/v1/images", "request": {}}),
        )
        .await;
    assert_eq!(unknown.status(), 400);
    let error: Value = unknown.json().await.unwrap();
    assert_eq!(error["error"]["param"], "endpoint");
}

fn embedding_line(i: usize, url: &str) -> String {
    json!({
        "custom_id": format!("e-{i}"),
        "method": "POST",
        "url": url,
        "body": {"model": "text-embedding-3-small", "input": format!("text {i}")},
    })
    .to_string()
}

async fn create_batch(env: &Env, lines: &[String], endpoint: &str) -> Value {
    let mut input = lines.join("\n");
    input.push('\n');
    let file = env.upload_batch_file(&env.alpha, input.as_bytes()).await;
    let response = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": endpoint, "completion_window": "24h"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn an_embeddings_batch_writes_one_embedding_list_per_line() {
    let env = start(Setup::default()).await;
    let lines: Vec<String> = (0..30)
        .map(|i| embedding_line(i, "/v1/embeddings"))
        .collect();
    let batch = create_batch(&env, &lines, "/v1/embeddings").await;
    assert_eq!(batch["endpoint"], "/v1/embeddings");
    let id = batch["id"].as_str().unwrap();
    let done = env.wait_for_batch(id, &["completed", "failed"], SOON).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 30);
    let (output, errors) = env.finished_batch_lines(&done, 30).await;
    assert!(errors.is_empty());
    for line in &output {
        let body = &line["response"]["body"];
        assert_eq!(body["object"], "list", "{line}");
        assert_eq!(body["data"][0]["embedding"].as_array().unwrap().len(), 8);
    }
}

#[tokio::test]
async fn a_line_whose_url_is_not_the_batch_endpoint_is_invalid_url() {
    let env = start(Setup::default()).await;
    let lines = [
        embedding_line(0, "/v1/embeddings"),
        embedding_line(1, "/v1/chat/completions"),
    ];
    let batch = create_batch(&env, &lines, "/v1/embeddings").await;
    let id = batch["id"].as_str().unwrap();
    let failed = env.wait_for_batch(id, &["failed", "completed"], SOON).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let errors = failed["errors"]["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{failed}");
    assert_eq!(errors[0]["code"], "invalid_url");
    assert_eq!(errors[0]["line"], 2);

    let lines = [
        response_line(0, "/v1/responses"),
        response_line(1, "/v1/embeddings"),
    ];
    let batch = create_batch(&env, &lines, "/v1/responses").await;
    let id = batch["id"].as_str().unwrap();
    let failed = env.wait_for_batch(id, &["failed", "completed"], SOON).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    let errors = failed["errors"]["data"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{failed}");
    assert_eq!(errors[0]["code"], "invalid_url");
    assert_eq!(errors[0]["line"], 2);

    let refused = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": batch["input_file_id"], "endpoint": "/v1/images", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["param"], "endpoint");
}

fn response_line(i: usize, url: &str) -> String {
    json!({
        "custom_id": format!("r-{i}"),
        "method": "POST",
        "url": url,
        "body": {"model": "gpt-priced", "input": format!("line {i} of the batch")},
    })
    .to_string()
}

#[tokio::test]
async fn a_responses_batch_writes_one_response_per_line_and_sums_and_prices_its_usage() {
    let env = start(Setup {
        prices: PRICES,
        ..Setup::default()
    })
    .await;
    let lines: Vec<String> = (0..20).map(|i| response_line(i, "/v1/responses")).collect();
    let batch = create_batch(&env, &lines, "/v1/responses").await;
    assert_eq!(batch["endpoint"], "/v1/responses");
    let id = batch["id"].as_str().unwrap();
    let done = env.wait_for_batch(id, &["completed", "failed"], SOON).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 20);
    let (output, errors) = env.finished_batch_lines(&done, 20).await;
    assert!(errors.is_empty());
    let (mut input, mut out) = (0, 0);
    for line in &output {
        let body = &line["response"]["body"];
        assert_eq!(line["response"]["status_code"], 200, "{line}");
        assert_eq!(body["object"], "response", "{line}");
        assert_eq!(body["status"], "completed", "{line}");
        let n = line["custom_id"].as_str().unwrap().trim_start_matches("r-");
        assert_eq!(
            body["output"][0]["content"][0]["text"],
            format!("line {n} of the batch")
        );
        let (i, o) = response_tokens(body);
        input += i;
        out += o;
    }
    assert_eq!(done["usage"]["input_tokens"], input, "{done}");
    assert_eq!(done["usage"]["output_tokens"], out, "{done}");
    assert_eq!(done["usage"]["total_tokens"], input + out, "{done}");
    // Priced as a chat batch is: gateway lines bill at the standard tier.
    assert_eq!(
        done["prism"]["cost_usd"],
        usd(2 * input + 4 * out),
        "{done}"
    );
}

#[tokio::test]
async fn a_responses_request_runs_as_an_async_or_scheduled_job_whose_result_is_the_response() {
    let env = start(Setup {
        prices: PRICES,
        ..Setup::default()
    })
    .await;
    let body = json!({"model": "gpt-priced", "input": "hello there"});
    let response = post_async(&env, "/v1/responses", &body).await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["endpoint"], "/v1/responses");
    assert!(job["id"].as_str().unwrap().starts_with("job_"), "{job}");
    let done = env
        .wait_for(
            &env.alpha,
            job["id"].as_str().unwrap(),
            &["completed", "failed"],
            SOON,
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["object"], "response", "{done}");
    assert_eq!(
        done["result"]["output"][0]["content"][0]["text"],
        "hello there"
    );
    let (input, output) = response_tokens(&done["result"]);
    assert_eq!(
        done["prism"]["cost_usd"],
        usd(2 * input + 4 * output),
        "{done}"
    );

    let scheduled = env
        .post(
            &env.alpha,
            "/v1/scheduled",
            &json!({"scheduled_at": rfc3339_in(0), "endpoint": "/v1/responses", "request": body}),
        )
        .await;
    assert_eq!(scheduled.status(), 201);
    let job: Value = scheduled.json().await.unwrap();
    assert_eq!(job["endpoint"], "/v1/responses");
    let done = env
        .wait_for(
            &env.alpha,
            job["id"].as_str().unwrap(),
            &["completed", "failed"],
            SOON,
        )
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["object"], "response", "{done}");

    // `background` is the Responses API's own durable mode: a job may not ask for it as well,
    // nor stream.
    let background = json!({"model": "gpt-priced", "input": "x", "background": true});
    let streamed = json!({"model": "gpt-priced", "input": "x", "stream": true});
    for (response, param, code) in [
        (
            post_async(&env, "/v1/responses", &background).await,
            "background",
            "invalid_value",
        ),
        (
            post_async(&env, "/v1/responses", &streamed).await,
            "stream",
            "streaming_unsupported",
        ),
        (
            env.post(
                &env.alpha,
                "/v1/scheduled",
                &json!({"scheduled_at": rfc3339_in(0), "endpoint": "/v1/responses", "request": background}),
            )
            .await,
            "request.background",
            "invalid_value",
        ),
    ] {
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
    }
    assert_eq!(env.mock.hits("gpt-priced"), 2);
}

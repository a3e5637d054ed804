//! The Batch API through `prism serve`: create, validate, run line by line, finalize into output
//! and error files, cancel, expire, faults. Runs on both backends (`PRISM_TEST_BACKEND`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use prism_core::batches::decisions::FINALIZE_RECHECK;
use serde_json::{Value, json};
use support::{Env, Setup, start};

const SOON: Duration = Duration::from_secs(60);

/// The chunk lease the cancel test configures. A cancel's finalizer waits for every chunk's
/// claim to go: a live holder lets go at its next write (within a third of the lease), but a
/// holder that went silent (a storage failure that kept its release from landing too, a process
/// gone) is waited out until its lease lapses, by design, since a holder in another process may
/// still commit results the cancel must keep. The old wait (60 s) equalled the default lease, so
/// one silent holder failed the test: on CI, once, on aws, "still cancelling after 60 s".
const CANCEL_LEASE: Duration = Duration::from_secs(20);
/// How long a cancel may take to end: one lease for a silent holder, the finalizer's recheck,
/// and the usual slack for a loaded machine.
const CANCEL_ENDS_WITHIN: Duration = CANCEL_LEASE
    .saturating_add(FINALIZE_RECHECK)
    .saturating_add(SOON);

fn line(custom_id: &str, model: &str, content: &str) -> String {
    json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    })
    .to_string()
}

fn jsonl(lines: &[String]) -> Vec<u8> {
    let mut out = lines.join("\n");
    out.push('\n');
    out.into_bytes()
}

async fn create_batch(env: &Env, file_id: &str) -> Value {
    let response = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h", "metadata": {"run": "t"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn small_chunks() -> Setup<'static> {
    Setup {
        workers: "upstream_timeout = \"2s\"",
        ..Setup::default()
    }
}

#[tokio::test]
async fn batch_runs_every_line_and_writes_results_in_input_order() {
    let env = start(Setup {
        batches: "lines_per_chunk = 10\ncheckpoint_lines = 4",
        ..small_chunks()
    })
    .await;
    let lines: Vec<String> = (0..25)
        .map(|i| {
            line(
                &format!("req-{i}"),
                if i % 2 == 0 { "gpt-a" } else { "gpt-b" },
                &format!("q{i}"),
            )
        })
        .collect();
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let created = create_batch(&env, &file).await;
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("batch_"));
    assert_eq!(created["object"], "batch");
    assert_eq!(created["status"], "validating");
    assert_eq!(
        created["request_counts"],
        json!({"total": 0, "completed": 0, "failed": 0})
    );
    assert_eq!(created["endpoint"], "/v1/chat/completions");
    assert_eq!(created["completion_window"], "24h");
    assert_eq!(created["input_file_id"], file.as_str());
    assert_eq!(created["metadata"], json!({"run": "t"}));
    assert_eq!(
        created["expires_at"].as_i64().unwrap(),
        created["created_at"].as_i64().unwrap() + 86_400
    );
    for key in [
        "errors",
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
        "usage",
        "model",
    ] {
        assert!(created.get(key).is_some(), "missing key {key}");
    }

    // Deleting the input while the batch reads it answers as deleted; the batch still reads it.
    let deleted = env.delete(&env.alpha, &format!("/v1/files/{file}")).await;
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        env.get(&env.alpha, &format!("/v1/files/{file}"))
            .await
            .status(),
        404
    );

    let done = env.wait_for_batch(id, &["completed"], SOON).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 25, "completed": 25, "failed": 0})
    );
    assert!(done["error_file_id"].is_null());
    assert!(
        done["in_progress_at"].is_i64()
            && done["finalizing_at"].is_i64()
            && done["completed_at"].is_i64()
    );
    assert!(done["usage"]["total_tokens"].as_u64().unwrap() > 0);
    let output = env.file_lines(&done["output_file_id"]).await;
    let ids: Vec<&str> = output
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (0..25).map(|i| format!("req-{i}")).collect();
    assert_eq!(ids, expected, "input order");
    for (i, l) in output.iter().enumerate() {
        assert!(l["id"].as_str().unwrap().starts_with("batch_req_"));
        assert_eq!(l["response"]["status_code"], 200);
        assert!(l["response"]["request_id"].is_string());
        assert_eq!(
            l["response"]["body"]["choices"][0]["message"]["content"],
            format!("q{i}")
        );
        assert!(l["error"].is_null());
    }
    assert_eq!(env.mock.hits("gpt-a") + env.mock.hits("gpt-b"), 25);
    let outputs: Value = env
        .get(&env.alpha, "/v1/files?purpose=batch_output")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(outputs["data"][0]["id"], done["output_file_id"]);
    let listed: Value = env
        .get(&env.alpha, "/v1/batches?limit=5")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["object"], "list");
    assert_eq!(listed["data"][0]["id"], id);
    assert_eq!(listed["has_more"], false);
}

#[tokio::test]
async fn invalid_lines_fail_the_batch_with_every_error_and_its_line() {
    let env = start(Setup {
        models: r#"["gpt-*", "mock-*"]"#,
        ..Setup::default()
    })
    .await;
    let good = line("ok-1", "gpt-a", "x");
    let text = [
        "\u{feff}".to_owned() + &good,
        "".into(),
        "{not json".into(),
        "[1, 2]".into(),
        json!({"method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-a", "messages": []}}).to_string(),
        line("ok-1", "gpt-a", "dup"),
        json!({"custom_id": "u", "method": "POST", "url": "/v1/embeddings", "body": {"model": "gpt-a", "messages": [{"role": "user", "content": "x"}]}}).to_string(),
        json!({"custom_id": "s", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-a", "stream": true, "messages": [{"role": "user", "content": "x"}]}}).to_string(),
        line("m", "claude-x", "x"),
        json!({"custom_id": "g", "method": "GET", "url": "/v1/chat/completions", "body": {"model": "gpt-a", "messages": [{"role": "user", "content": "x"}]}}).to_string(),
    ]
    .join("\r\n");
    let file = env.upload_batch_file(&env.alpha, text.as_bytes()).await;
    let created = create_batch(&env, &file).await;
    let failed = env
        .wait_for_batch(created["id"].as_str().unwrap(), &["failed"], SOON)
        .await;
    assert!(failed["failed_at"].is_i64());
    let mut errors: HashMap<u64, Vec<(String, Value)>> = HashMap::new();
    for e in failed["errors"]["data"].as_array().unwrap() {
        errors
            .entry(e["line"].as_u64().unwrap())
            .or_default()
            .push((e["code"].as_str().unwrap().to_owned(), e["param"].clone()));
    }
    let expect = |line: u64, code: &str, param: Option<&str>| {
        let found = errors
            .get(&line)
            .unwrap_or_else(|| panic!("no error on line {line}: {errors:?}"));
        assert!(
            found
                .iter()
                .any(|(c, p)| c == code && param.is_none_or(|param| p == param)),
            "line {line}: {found:?}"
        );
    };
    expect(3, "invalid_json_line", None);
    expect(4, "invalid_json_line", None);
    expect(5, "missing_required_parameter", Some("custom_id"));
    expect(5, "invalid_request", Some("body.messages"));
    expect(6, "duplicate_custom_id", Some("custom_id"));
    expect(7, "invalid_url", Some("url"));
    expect(8, "streaming_unsupported", Some("body.stream"));
    expect(9, "model_not_found", Some("body.model"));
    expect(10, "invalid_request", Some("method"));
    assert!(!errors.contains_key(&1) && !errors.contains_key(&2));
    assert_eq!(env.mock.hits("gpt-a"), 0, "nothing ran");

    for (content, code) in [
        (b"".as_slice(), None),
        (b"\n\n".as_slice(), Some("empty_file")),
    ] {
        if content.is_empty() {
            continue; // an empty upload is refused at upload time
        }
        let file = env.upload_batch_file(&env.alpha, content).await;
        let created = create_batch(&env, &file).await;
        let failed = env
            .wait_for_batch(created["id"].as_str().unwrap(), &["failed"], SOON)
            .await;
        assert_eq!(failed["errors"]["data"][0]["code"], code.unwrap());
        assert!(failed["errors"]["data"][0]["line"].is_null());
    }
}

#[tokio::test]
async fn create_refuses_bad_parameters_and_other_tenants_files() {
    let env = start(Setup::default()).await;
    let file = env
        .upload_batch_file(&env.alpha, &jsonl(&[line("a", "gpt-a", "x")]))
        .await;
    let body = |input: &str, endpoint: &str, window: &str| json!({"input_file_id": input, "endpoint": endpoint, "completion_window": window});
    let seventeen: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut with_metadata = body(&file, "/v1/chat/completions", "24h");
    with_metadata["metadata"] = Value::Object(seventeen);
    for (request, param) in [
        (body(&file, "/v1/images/generations", "24h"), "endpoint"),
        (
            body(&file, "/v1/chat/completions", "48h"),
            "completion_window",
        ),
        (
            json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "input_file_id",
        ),
        (with_metadata, "metadata"),
    ] {
        let response = env.post(&env.alpha, "/v1/batches", &request).await;
        assert_eq!(response.status(), 400, "{request}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
    }
    let theirs = env
        .post(
            &env.beta,
            "/v1/batches",
            &body(&file, "/v1/chat/completions", "24h"),
        )
        .await;
    assert_eq!(theirs.status(), 404);
    let mut accepted = body(&file, "/v1/chat/completions", "24h");
    accepted["output_expires_after"] = json!({"anchor": "created_at", "seconds": 7200});
    assert_eq!(
        env.post(&env.alpha, "/v1/batches", &accepted)
            .await
            .status(),
        200
    );
    assert_eq!(
        env.get(&env.beta, "/v1/batches")
            .await
            .json::<Value>()
            .await
            .unwrap()["data"],
        json!([])
    );
    assert_eq!(
        env.get(&env.alpha, "/v1/batches/batch_unknown")
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn cancel_keeps_finished_lines_and_writes_the_rest_as_batch_cancelled() {
    let batches = format!(
        "lines_per_chunk = 5\nline_concurrency = 2\ncheckpoint_lines = 1\nlease = \"{}s\"",
        CANCEL_LEASE.as_secs()
    );
    let env = start(Setup {
        batches: &batches,
        ..small_chunks()
    })
    .await;
    let lines: Vec<String> = (0..30)
        .map(|i| line(&format!("c-{i}"), "mock-slow-300-cancel", "x"))
        .collect();
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let id = create_batch(&env, &file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let running = env.wait_for_batch(&id, &["in_progress"], SOON).await;
    assert_eq!(running["request_counts"]["total"], 30);
    // Some lines finished and committed: they must stay in the output.
    let deadline = Instant::now() + SOON;
    loop {
        let batch: Value = env
            .get(&env.alpha, &format!("/v1/batches/{id}"))
            .await
            .json()
            .await
            .unwrap();
        if batch["request_counts"]["completed"].as_u64().unwrap() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "{batch}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let response = env
        .post(&env.alpha, &format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    let cancelling: Value = response.json().await.unwrap();
    assert!(["cancelling", "cancelled"].contains(&cancelling["status"].as_str().unwrap()));
    assert!(cancelling["cancelling_at"].is_i64());
    let again = env
        .post(&env.alpha, &format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(again.status(), 200);

    let done = env
        .wait_for_batch(&id, &["cancelled"], CANCEL_ENDS_WITHIN)
        .await;
    assert!(done["cancelled_at"].is_i64());
    let output = env.file_lines(&done["output_file_id"]).await;
    let errors = env.file_lines(&done["error_file_id"]).await;
    let mut seen: Vec<String> = output
        .iter()
        .chain(&errors)
        .map(|l| l["custom_id"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("c-{i}")).collect();
    expected.sort();
    assert_eq!(seen, expected, "every line exactly once");
    assert!(!errors.is_empty(), "some lines never ran");
    assert!(output.len() >= 2, "finished lines are kept");
    for e in &errors {
        assert!(e["response"].is_null());
        assert_eq!(e["error"]["code"], "batch_cancelled");
    }
    assert_eq!(
        done["request_counts"]["completed"].as_u64().unwrap() as usize,
        output.len()
    );
    assert_eq!(
        done["request_counts"]["failed"].as_u64().unwrap() as usize,
        errors.len()
    );
    let hits = env.mock.hits("mock-slow-300-cancel");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        env.mock.hits("mock-slow-300-cancel"),
        hits,
        "no line starts after the cancel ended"
    );

    let conflict = env
        .post(&env.alpha, &format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        conflict.status(),
        200,
        "cancelling a cancelled batch answers it again"
    );
    let small = env
        .upload_batch_file(&env.alpha, &jsonl(&[line("z", "gpt-z", "x")]))
        .await;
    let finished = create_batch(&env, &small).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    env.wait_for_batch(&finished, &["completed"], SOON).await;
    let refused = env
        .post(
            &env.alpha,
            &format!("/v1/batches/{finished}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(refused.headers()["x-should-retry"], "false");
}

#[tokio::test]
async fn cancel_mid_run_keeps_every_line_the_upstream_answered_before_it() {
    // `checkpoint_every` at its former 5 s default: lines answered before the cancel are still
    // waiting for their commit when it lands, which is the case under test.
    let env = start(Setup {
        batches: "line_concurrency = 50\ncheckpoint_every = \"5s\"",
        ..Setup::default()
    })
    .await;
    let model = "mock-slow-1500-keep";
    let lines: Vec<String> = (0..250)
        .map(|i| line(&format!("k-{i}"), model, "x"))
        .collect();
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let id = create_batch(&env, &file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let deadline = Instant::now() + SOON;
    while env.mock.finished(model) < 50 {
        assert!(Instant::now() < deadline, "no line finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answered_before_cancel = env.mock.finished(model) as usize;
    let response = env
        .post(&env.alpha, &format!("/v1/batches/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(response.status(), 200);

    let done = env.wait_for_batch(&id, &["cancelled"], SOON).await;
    let (output, errors) = env.finished_batch_lines(&done, 250).await;
    assert!(
        output.len() >= answered_before_cancel,
        "{} lines in the output, {answered_before_cancel} answered before the cancel: {done}",
        output.len()
    );
    assert!(output.len() as u64 <= env.mock.finished(model));
    for o in &output {
        assert_eq!(o["response"]["status_code"], 200);
    }
    for e in &errors {
        assert!(e["response"].is_null());
        assert_eq!(e["error"]["code"], "batch_cancelled");
    }
    let counts = &done["request_counts"];
    assert_eq!(counts["completed"].as_u64().unwrap() as usize, output.len());
    assert_eq!(counts["failed"].as_u64().unwrap() as usize, errors.len());
    assert_eq!(counts["total"], 250);
}

#[tokio::test]
async fn a_line_whose_upstream_keeps_failing_fails_after_max_attempts_not_the_window() {
    let env = start(Setup {
        workers: "max_attempts = 3\nupstream_timeout = \"2s\"",
        ..Setup::default()
    })
    .await;
    let models = ["mock-truncated-b", "mock-bad-json-b", "mock-500-1000000-b"];
    let lines: Vec<String> = models
        .iter()
        .flat_map(|model| (0..2).map(move |i| line(&format!("{model}-{i}"), model, "x")))
        .collect();
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let id = create_batch(&env, &file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Well inside the 24 h window: before, these lines retried until it ended.
    let done = env.wait_for_batch(&id, &["completed"], SOON).await;
    let (output, errors) = env.finished_batch_lines(&done, lines.len()).await;
    assert!(output.is_empty(), "{output:?}");
    assert_eq!(
        done["request_counts"],
        json!({"total": 6, "completed": 0, "failed": 6})
    );
    for e in &errors {
        let custom_id = e["custom_id"].as_str().unwrap();
        if custom_id.starts_with("mock-500") {
            assert_eq!(e["response"]["status_code"], 500, "{e}");
            assert!(e["response"]["body"]["error"]["message"].is_string(), "{e}");
        } else {
            assert!(e["response"].is_null(), "{e}");
            assert!(e["error"]["code"].is_string(), "{e}");
        }
    }
    for model in models {
        assert_eq!(
            env.mock.hits(model),
            2 * 3,
            "{model}: max_attempts calls per line"
        );
    }
}

#[tokio::test]
async fn mixed_upstream_faults_end_every_line_in_the_right_file_and_shape() {
    let env = start(Setup {
        batches: "completion_window = \"12s\"\nlines_per_chunk = 4\ncheckpoint_every = \"1s\"",
        ..small_chunks()
    })
    .await;
    let lines = vec![
        line("ok", "gpt-fine", "x"),
        line("429", "mock-429-1-batch", "x"),
        line("500", "mock-500-2-batch", "x"),
        line("400", "mock-400-batch", "x"),
        line("quota", "mock-quota-batch", "x"),
        line("hang", "mock-hang-batch", "x"),
        line("badjson", "mock-bad-json-batch", "x"),
        line("ok2", "gpt-fine", "y"),
    ];
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let id = create_batch(&env, &file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = env
        .wait_for_batch(&id, &["completed", "expired"], SOON)
        .await;
    let output = env.file_lines(&done["output_file_id"]).await;
    let errors = env.file_lines(&done["error_file_id"]).await;
    let by_id: HashMap<&str, &Value> = output
        .iter()
        .chain(&errors)
        .map(|l| (l["custom_id"].as_str().unwrap(), l))
        .collect();
    assert_eq!(by_id.len(), lines.len(), "every line exactly once");
    for ok in ["ok", "ok2", "429", "500"] {
        assert_eq!(by_id[ok]["response"]["status_code"], 200, "{ok}");
    }
    assert_eq!(by_id["400"]["response"]["status_code"], 400);
    assert_eq!(
        by_id["400"]["response"]["body"]["error"]["code"],
        "context_length_exceeded"
    );
    assert!(by_id["400"]["error"].is_null());
    assert_eq!(by_id["quota"]["response"]["status_code"], 429);
    // Retried `max_attempts` times (or until the window closed), then written off with no
    // response.
    for stuck in ["hang", "badjson"] {
        assert!(by_id[stuck]["response"].is_null(), "{stuck}");
        assert!(by_id[stuck]["error"]["code"].is_string(), "{stuck}");
    }
    // The stuck lines either gave up just before the window's end (their last error) or were
    // still retrying at its end (`batch_expired`): both end the batch within its window.
    assert!(
        ["completed", "expired"].contains(&done["status"].as_str().unwrap()),
        "{done}"
    );
    assert_eq!(
        done["request_counts"]["completed"].as_u64().unwrap() as usize,
        output.len()
    );
    assert_eq!(
        done["request_counts"]["failed"].as_u64().unwrap() as usize,
        errors.len()
    );
    assert_eq!(env.mock.hits("mock-429-1-batch"), 2);
    assert_eq!(env.mock.hits("mock-500-2-batch"), 3);
}

#[tokio::test]
async fn a_batch_whose_every_line_fails_still_completes() {
    let env = start(Setup::default()).await;
    let lines: Vec<String> = (0..3)
        .map(|i| line(&format!("f{i}"), "mock-400-all", "x"))
        .collect();
    let file = env.upload_batch_file(&env.alpha, &jsonl(&lines)).await;
    let id = create_batch(&env, &file).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = env.wait_for_batch(&id, &["completed"], SOON).await;
    assert_eq!(
        done["request_counts"],
        json!({"total": 3, "completed": 0, "failed": 3})
    );
    assert!(done["output_file_id"].is_null());
    assert_eq!(env.file_lines(&done["error_file_id"]).await.len(), 3);
}

/// A batch line whose upstream call never answers holds its chunk only until the attempt timeout
/// cuts the call; the line is retried and completes, once, while the chunk's lease is renewed
/// beside it (lines run at most `max_attempts` attempts of one timeout each, bar rate limits).
#[tokio::test]
async fn a_batch_line_whose_upstream_call_hangs_is_cut_by_the_attempt_timeout_and_completes_once() {
    let env = start(Setup {
        workers: "upstream_timeout = \"2s\"",
        batches: "lease = \"3s\"",
        ..Setup::default()
    })
    .await;
    let model = "mock-hangfirst-1-line";
    let id = env
        .start_batch(&support::chat_batch_input("h", model, 1))
        .await;
    let done = env
        .wait_for_batch(&id, &["completed", "failed", "expired"], SOON)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let (output, errors) = env.finished_batch_lines(&done, 1).await;
    assert_eq!((output.len(), errors.len()), (1, 0), "{errors:?}");
    assert_eq!(output[0]["response"]["status_code"], 200);
    assert_eq!(env.mock.hits(model), 2, "the hung call and one retry");
}

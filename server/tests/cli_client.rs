//! `prism files|jobs|scheduled` as a client of a running Prism, over real HTTP: each command,
//! its table and `--json` output and exit status; `files upload` of a large file in parallel parts
//! through the Uploads API and of a small one whole; and every command without a key, with a
//! wrong one or with no Prism to reach. `prism batches` is `cli_batches.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use serde_json::Value;
use support::cli::{cli, run_failing, run_json, run_ok, write_input};
use support::{Env, Setup, chat_batch_input};

async fn content_of(env: &Env, file_id: &str) -> Vec<u8> {
    let response = env
        .get(&env.alpha, &format!("/v1/files/{file_id}/content"))
        .await;
    assert_eq!(response.status(), 200);
    response.bytes().await.unwrap().to_vec()
}

/// The progress lines `files upload` wrote (stderr is not a terminal here): one per part.
fn upload_lines(stderr: &[u8]) -> usize {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("uploaded "))
        .count()
}

#[tokio::test]
async fn files_upload_sends_a_large_file_in_parallel_parts_and_a_small_one_whole() {
    let env = support::start(Setup::default()).await;
    let text = chat_batch_input("up", "gpt-cli", 2_000);
    let big = write_input(&env, "big.jsonl", &text);
    let part_size = 64 * 1024;
    let parts = text.len().div_ceil(part_size);
    assert!(parts >= 4, "{} bytes", text.len());
    let output = cli(&env, &env.alpha)
        .args([
            "files",
            "upload",
            big.to_str().unwrap(),
            "--purpose",
            "batch",
        ])
        .args(["--part-size", &part_size.to_string(), "--parallel", "3"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let id = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert!(id.starts_with("file-"), "stdout is the file id: {id}");
    assert_eq!(
        upload_lines(&output.stderr),
        parts,
        "a progress line per part"
    );
    assert_eq!(content_of(&env, &id).await, text.as_bytes());
    // The Uploads API made it: its file is named as the upload said, and lists as a batch file.
    let file: Value = env
        .get(&env.alpha, &format!("/v1/files/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(file["filename"], "big.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["bytes"], text.len());

    let small_text = chat_batch_input("small", "gpt-cli", 3);
    let small = write_input(&env, "small.jsonl", &small_text);
    let output = cli(&env, &env.alpha)
        .args(["files", "upload", small.to_str().unwrap()])
        .args(["--part-size", &part_size.to_string(), "--json"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let file: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(file["object"], "file");
    assert_eq!(
        upload_lines(&output.stderr),
        1,
        "one request, the whole file"
    );
    assert_eq!(
        content_of(&env, file["id"].as_str().unwrap()).await,
        small_text.as_bytes()
    );

    // `batches create` sends a file above one part (4 MiB) the same way.
    let one_line = chat_batch_input("large", "gpt-cli", 1).len();
    let many = chat_batch_input("large", "gpt-cli", (5 * 1024 * 1024) / one_line + 1);
    let large = write_input(&env, "large.jsonl", &many);
    let output = cli(&env, &env.alpha)
        .args(["batches", "create", large.to_str().unwrap(), "--json"])
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        upload_lines(&output.stderr),
        2,
        "two parts of 4 MiB at most"
    );
    let batch: Value = serde_json::from_slice(&output.stdout).unwrap();
    let input = batch["input_file_id"].as_str().unwrap();
    assert_eq!(content_of(&env, input).await.len(), many.len());
    let id = batch["id"].as_str().unwrap();
    run_ok(&env, &["batches", "cancel", id]).await;
    let missing = run_failing(
        &env,
        &env.alpha,
        &["files", "upload", "/no/such/file.jsonl"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("/no/such/file.jsonl"),
        "{missing:?}"
    );
}

#[tokio::test]
async fn jobs_get_list_and_cancel_async_jobs() {
    let env = support::start(Setup::default()).await;
    let done = env.submit(&env.alpha, "gpt-cli-job", "hello").await;
    env.wait_for(&env.alpha, &done, &["completed"], Duration::from_secs(30))
        .await;
    let job = run_json(&env, &["jobs", "get", &done]).await;
    assert_eq!(job["status"], "completed");
    assert_eq!(job["result"]["choices"][0]["message"]["content"], "hello");

    let hanging = env.submit(&env.alpha, "mock-hang-cli-job", "never").await;
    let table = run_ok(&env, &["jobs", "list", "--limit", "10"]).await;
    assert!(table.lines().next().unwrap().contains("MODEL"), "{table}");
    assert!(table.contains(&done) && table.contains(&hanging), "{table}");
    let completed = run_json(&env, &["jobs", "list", "--status", "completed"]).await;
    let ids: Vec<_> = completed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| &j["id"])
        .collect();
    assert_eq!(ids, [&Value::from(done.clone())]);

    let cancelled = run_json(&env, &["jobs", "cancel", &hanging]).await;
    assert_eq!(cancelled["status"], "cancelled");
    let refused = run_failing(&env, &env.alpha, &["jobs", "cancel", &done]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("HTTP 409"), "{stderr}");
}

#[tokio::test]
async fn scheduled_create_get_list_and_cancel() {
    let env = support::start(Setup::default()).await;
    let job = run_json(
        &env,
        &[
            "scheduled",
            "create",
            "--after",
            "1h",
            "--model",
            "gpt-cli-later",
            "--prompt",
            "later",
            "--metadata",
            "team=search",
        ],
    )
    .await;
    let id = job["id"].as_str().unwrap();
    assert!(id.starts_with("sched_"), "{job}");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["metadata"]["team"], "search");

    let request = write_input(
        &env,
        "request.json",
        r#"{"model": "gpt-cli-soon", "messages": [{"role": "user", "content": "soon"}]}"#,
    );
    let at = support::rfc3339_in(1_000);
    let soon = run_json(
        &env,
        &[
            "scheduled",
            "create",
            "--at",
            &at,
            "--request",
            request.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(soon["scheduled_at"], at.as_str());

    assert_eq!(run_json(&env, &["scheduled", "get", id]).await["id"], id);
    let table = run_ok(&env, &["scheduled", "list", "--status", "pending"]).await;
    assert!(
        table.lines().next().unwrap().contains("SCHEDULED AT"),
        "{table}"
    );
    assert!(table.contains(id), "{table}");

    let cancelled = run_json(&env, &["scheduled", "cancel", id]).await;
    assert_eq!(cancelled["status"], "cancelled");
    let soon_id = soon["id"].as_str().unwrap();
    let ran = env
        .wait_for(&env.alpha, soon_id, &["completed"], Duration::from_secs(90))
        .await;
    assert_eq!(ran["result"]["choices"][0]["message"]["content"], "soon");
}

#[tokio::test]
async fn commands_without_a_key_or_with_a_wrong_one_fail_with_the_reason() {
    let env = support::start(Setup::default()).await;
    let output = cli(&env, "unused")
        .env_remove("PRISM_API_KEY")
        .args(["batches", "list"])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("PRISM_API_KEY is not set"));

    // --base-url wins over PRISM_BASE_URL.
    let nowhere = "http://127.0.0.1:9/v1";
    let base = format!("{}/v1", env.base());
    let listed = cli(&env, &env.alpha)
        .env("PRISM_BASE_URL", nowhere)
        .args(["batches", "list", "--base-url", &base])
        .output()
        .await
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let unreachable = cli(&env, &env.alpha)
        .env("PRISM_BASE_URL", nowhere)
        .args(["batches", "list"])
        .output()
        .await
        .unwrap();
    assert!(!unreachable.status.success());
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach Prism"));

    let refused = run_failing(&env, "sk-prism-wrong", &["jobs", "list"]).await;
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("HTTP 401"),
        "{refused:?}"
    );
    let missing = run_failing(
        &env,
        &env.alpha,
        &["batches", "get", "batch_0000000000000000000000000"],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("HTTP 404"),
        "{missing:?}"
    );
}

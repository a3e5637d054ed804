//! A batch survives its process being killed: SIGKILL `prism serve` at random moments while a
//! 5,000-line batch runs, restart it on the same data directory each time, and every line still
//! ends exactly once in the output or error file. Embedded backend (its crash model is the
//! process dying with the disk surviving).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use support::{Setup, start};

const LINES: usize = 5_000;
const KILLS: usize = 10;
/// Lines started but not yet committed, the most a kill can make the next process redo: the
/// upstream calls in flight (`model_concurrency`) plus each running chunk's finished lines not
/// yet checkpointed (`checkpoint_lines`, for at most 10 chunks).
const IN_FLIGHT: usize = 50 + 10 * 10;

/// A pause of 0.4 to 1.6 s that differs from run to run.
fn random_pause() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(400 + u64::from(nanos % 1200))
}

#[tokio::test]
async fn killed_ten_times_during_a_5000_line_batch_every_line_ends_once() {
    let mut env = start(Setup {
        batches: "lines_per_chunk = 500\nline_concurrency = 50\nmodel_concurrency = 50\n\
                  checkpoint_lines = 10\ncheckpoint_every = \"200ms\"",
        ..Setup::default()
    })
    .await;
    if env.backend.is_aws() {
        return; // the crash model under test is the embedded process's
    }
    let mut input = String::new();
    for i in 0..LINES {
        input.push_str(
            &json!({"custom_id": format!("k-{i}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": "mock-slow-150-crash", "messages": [{"role": "user", "content": format!("{i}")}]}})
            .to_string(),
        );
        input.push('\n');
    }
    let file = env.upload_batch_file(&env.alpha, input.as_bytes()).await;
    let created: Value = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();

    let mut kills = 0;
    for _ in 0..KILLS {
        tokio::time::sleep(random_pause()).await;
        env.kill_server().await;
        kills += 1;
        env.start_server().await;
    }

    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(180))
        .await;
    let output = env.file_lines(&done["output_file_id"]).await;
    let errors = env.file_lines(&done["error_file_id"]).await;
    let mut seen = HashSet::new();
    for line in output.iter().chain(&errors) {
        let custom_id = line["custom_id"].as_str().unwrap().to_owned();
        assert!(seen.insert(custom_id.clone()), "{custom_id} appears twice");
    }
    assert_eq!(seen.len(), LINES, "every custom_id appears");
    assert_eq!(done["request_counts"]["total"], LINES);
    assert_eq!(
        done["request_counts"]["completed"].as_u64().unwrap() as usize,
        output.len()
    );
    assert_eq!(
        done["request_counts"]["failed"].as_u64().unwrap() as usize,
        errors.len()
    );
    let hits = env.mock.hits("mock-slow-150-crash") as usize;
    assert!(
        hits <= LINES + kills * IN_FLIGHT,
        "{hits} upstream calls for {LINES} lines and {kills} kills"
    );
    eprintln!("{kills} kills: {hits} upstream calls for {LINES} lines");
}

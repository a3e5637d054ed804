//! `prism serve` killed (SIGKILL) in the middle of a group commit on embedded storage: the
//! writer is held after a group's statements and before its `COMMIT` (the crash tests' hook,
//! `PRISM_TEST_HOLD_COMMIT_WHILE`), submits pile up behind it, and the process dies. None of
//! those submits was acknowledged, and after a restart none of them is there, not even in part:
//! a job and its idempotency record are written together or not at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;
use support::{Env, Setup, chat_body, eventually, start};

const SUBMITS: usize = 16;

async fn submit_with_key(env: &Env, key: &str) -> Result<reqwest::Response, reqwest::Error> {
    env.http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&env.alpha)
        .header("x-prism-async", "true")
        .header("idempotency-key", key)
        .json(&chat_body("gpt-group", key))
        .send()
        .await
}

async fn job_ids(env: &Env) -> Vec<String> {
    let page: Value = env
        .get(&env.alpha, "/v1/async?limit=100")
        .await
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["id"].as_str().unwrap().to_owned())
        .collect()
}

fn held_marker(hold: &Path) -> PathBuf {
    let mut held = hold.as_os_str().to_owned();
    held.push(".held");
    PathBuf::from(held)
}

#[tokio::test]
async fn killed_during_a_group_commit_no_write_of_the_group_was_acknowledged_or_half_applied() {
    let mut env = start(Setup::default()).await;
    if env.backend.is_aws() {
        return; // the group commit is the embedded writer's
    }
    let hold = env.dir.path().join("hold-commit");
    env.kill_server().await;
    env.extra_env.push((
        "PRISM_TEST_HOLD_COMMIT_WHILE".into(),
        hold.display().to_string(),
    ));
    env.start_server().await;

    // Acknowledged before the hold: it must survive.
    let before = submit_with_key(&env, "before").await.unwrap();
    assert_eq!(before.status(), 202);
    let before: Value = before.json().await.unwrap();
    let before_id = before["id"].as_str().unwrap().to_owned();
    env.wait_for(
        &env.alpha,
        &before_id,
        &["completed"],
        Duration::from_secs(10),
    )
    .await;

    let pid = env.server_pid().unwrap().to_string();
    std::fs::write(&hold, b"").unwrap();
    let keys: Vec<String> = (0..SUBMITS).map(|i| format!("grouped-{i}")).collect();
    let submits = join_all(keys.iter().map(|key| submit_with_key(&env, key)));
    let kill = async {
        eventually(
            Duration::from_secs(10),
            "a group held before its commit",
            || {
                let held = held_marker(&hold);
                async move { held.exists() }
            },
        )
        .await;
        // Let the other submits reach the writer's queue behind the held group.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let killed = std::process::Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap();
        assert!(killed.success());
    };
    let (answers, ()) = tokio::join!(submits, kill);
    let held_group: usize = std::fs::read_to_string(held_marker(&hold))
        .unwrap()
        .parse()
        .unwrap();
    assert!(held_group >= 1);
    for (key, answer) in keys.iter().zip(&answers) {
        assert!(
            answer.is_err(),
            "{key} was answered {:?} although its write never committed",
            answer.as_ref().map(reqwest::Response::status)
        );
    }
    env.kill_server().await; // reaps the killed process

    std::fs::remove_file(&hold).unwrap();
    env.start_server().await;
    assert_eq!(job_ids(&env).await, vec![before_id.clone()]);
    // No idempotency record outlived its job: each key makes a new job, which runs.
    for key in &keys {
        let again = submit_with_key(&env, key).await.unwrap();
        assert_eq!(again.status(), 202);
        let job: Value = again.json().await.unwrap();
        let id = job["id"].as_str().unwrap();
        env.wait_for(&env.alpha, id, &["completed"], Duration::from_secs(10))
            .await;
    }
    assert_eq!(job_ids(&env).await.len(), SUBMITS + 1);
}

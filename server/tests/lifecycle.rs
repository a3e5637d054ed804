//! The server's life on either backend: crash and restart, graceful shutdown, and the `keys`
//! commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{PRISM, Setup, eventually, start};
use tokio::process::Command;

#[tokio::test]
async fn killed_server_restarted_on_the_same_data_dir_completes_every_job() {
    const JOBS: usize = 60;
    const CONCURRENCY: u64 = 8;
    let mut env = start(Setup {
        workers: "concurrency = 8",
        ..Setup::default()
    })
    .await;
    let model = "mock-slow-300-crash";
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(env.submit(&env.alpha, model, &format!("job {i}")).await);
    }
    // Kill in the middle of the run, with a full set of calls in flight.
    eventually(Duration::from_secs(20), "some jobs done", || async {
        env.mock.hits(model) >= 20
    })
    .await;
    env.kill_server().await;
    let hits_at_kill = env.mock.hits(model);
    assert!(
        hits_at_kill < JOBS as u64,
        "the kill came too late to test anything"
    );

    env.start_server().await;
    for id in &ids {
        let job = env
            .wait_for(
                &env.alpha,
                id,
                &["completed", "failed"],
                Duration::from_secs(60),
            )
            .await;
        assert_eq!(job["status"], "completed", "job {id}: {job}");
    }
    let hits = env.mock.hits(model);
    assert!(
        hits <= JOBS as u64 + CONCURRENCY,
        "{hits} upstream calls for {JOBS} jobs with at most {CONCURRENCY} in flight at the kill"
    );
}

#[tokio::test]
async fn sigterm_lets_a_running_job_finish_before_exit() {
    let mut env = start(Setup::default()).await;
    let id = env
        .submit(&env.alpha, "mock-slow-1500-term", "finish me")
        .await;
    env.wait_for(&env.alpha, &id, &["running"], Duration::from_secs(10))
        .await;
    let status = env.stop_server(Duration::from_secs(10)).await;
    assert!(status.success(), "exit status {status}");

    env.start_server().await;
    let job = env.job(&env.alpha, &id).await;
    assert_eq!(
        job["status"], "completed",
        "finished inside the grace period: {job}"
    );
    assert_eq!(env.mock.hits("mock-slow-1500-term"), 1);
}

#[tokio::test]
async fn work_cut_off_by_the_grace_period_resumes_after_restart() {
    let mut env = start(Setup {
        workers: "shutdown_grace = \"1s\"",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "mock-slow-2500-cut", "x").await;
    env.wait_for(&env.alpha, &id, &["running"], Duration::from_secs(10))
        .await;
    env.stop_server(Duration::from_secs(10)).await;

    env.start_server().await;
    let job = env
        .wait_for(&env.alpha, &id, &["completed"], Duration::from_secs(15))
        .await;
    assert_eq!(job["status"], "completed");
    assert_eq!(
        env.mock.hits("mock-slow-2500-cut"),
        2,
        "aborted once, then run again"
    );
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_revoked_keys_get_401() {
    let env = start(Setup::default()).await;
    let key = support::create_key_on(&env.backend, &env.data_dir(), "gamma").await;
    let list = Command::new(PRISM)
        .args(["keys", "list", "--data-dir"])
        .arg(env.data_dir())
        .envs(env.backend.env())
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8(list.stdout).unwrap();
    assert!(listing.contains("gamma") && listing.contains("alpha"));
    assert!(!listing.contains(&key), "a listing must never show a key");
    let gamma_line = listing.lines().find(|l| l.contains("gamma")).unwrap();
    let key_id = gamma_line.split('\t').next().unwrap();

    let revoke = Command::new(PRISM)
        .args(["keys", "revoke", key_id, "--data-dir"])
        .arg(env.data_dir())
        .envs(env.backend.env())
        .status()
        .await
        .unwrap();
    assert!(revoke.success());
    let response = env.get(&key, "/v1/async").await;
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(env.get(&env.alpha, "/v1/async").await.status(), 200);
}

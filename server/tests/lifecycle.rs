//! The server's life: crash and restart on the same data directory, graceful shutdown, the
//! data-directory lock, the first-run key, and the `keys` commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use support::{PRISM, Setup, eventually, start};
use tokio::io::{AsyncBufReadExt, BufReader};
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
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let env = start(Setup::default()).await;
    let out = Command::new(PRISM)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(env.data_dir())
        .arg("--config")
        .arg(&env.config)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another prism process"));
}

#[tokio::test]
async fn first_serve_without_keys_prints_one_that_works() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(PRISM)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .env("PRISM_LOG", "warn")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let key = line.split_whitespace().last().unwrap().to_owned();
    assert!(key.starts_with("sk-prism-"), "{line}");
    assert!(line.contains("'default'"));

    let http = reqwest::Client::new();
    eventually(Duration::from_secs(10), "authenticated list", || {
        let (http, key) = (http.clone(), key.clone());
        async move {
            http.get(format!("http://127.0.0.1:{port}/v1/async"))
                .bearer_auth(&key)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    child.start_kill().unwrap();
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_revoked_keys_get_401() {
    let env = start(Setup::default()).await;
    let key = support::create_key(&env.data_dir(), "gamma").await;
    let list = Command::new(PRISM)
        .args(["keys", "list", "--data-dir"])
        .arg(env.data_dir())
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

//! Behaviour only the embedded backend has: the data-directory lock, the first-run key, and
//! `prism keys` / `prism webhooks` writing the SQLite file of a running server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{PRISM, Setup, chat_body, create_key_on, eventually, revoke_key_on, start};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

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

/// What one submitter saw: every answer's status, the ids of the accepted jobs, and the
/// slowest answer.
#[derive(Default)]
struct Submitted {
    statuses: Vec<u16>,
    ids: Vec<String>,
    slowest: Duration,
}

/// Submits async jobs as `key` until `stop`, a short pause between them.
async fn submit_until(base: String, key: String, stop: Arc<AtomicBool>) -> Submitted {
    let http = reqwest::Client::new();
    let mut seen = Submitted::default();
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let response = http
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(&key)
            .header("x-prism-async", "true")
            .json(&chat_body("gpt-beside-cli", &format!("job {n}")))
            .send()
            .await
            .unwrap();
        seen.slowest = seen.slowest.max(started.elapsed());
        seen.statuses.push(response.status().as_u16());
        if let Some(id) = response.json::<Value>().await.unwrap()["id"].as_str() {
            seen.ids.push(id.to_owned());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    seen
}

/// `prism keys` and `prism webhooks` open the data directory's SQLite file beside the server's
/// own single writer. Their writes take SQLite's write lock between two of the server's group
/// commits (each short), so neither side fails with SQLITE_BUSY, and the server reads what
/// they wrote on its next request: a new key works at once (only verified keys are cached),
/// and a revoked one stops within the key cache's 5 s.
#[tokio::test]
async fn keys_and_webhooks_written_by_the_cli_beside_a_running_server_work_at_once_and_no_submit_fails()
 {
    const ROUNDS: usize = 4;
    const SUBMITTERS: usize = 3;
    let env = start(Setup::default()).await;
    if env.backend.is_aws() {
        return; // one SQLite file shared by two processes is the embedded backend's case
    }
    let stop = Arc::new(AtomicBool::new(false));
    let submitters: Vec<_> = (0..SUBMITTERS)
        .map(|_| {
            tokio::spawn(submit_until(
                env.base().to_owned(),
                env.alpha.clone(),
                Arc::clone(&stop),
            ))
        })
        .collect();

    for round in 0..ROUNDS {
        let key = create_key_on(&env.backend, &env.data_dir(), "gamma").await;
        // At once: an unknown key is never cached, so the first request reads the new row.
        assert_eq!(env.get(&key, "/v1/async").await.status(), 200);
        let job = env
            .submit(&key, "gpt-beside-cli", "the new key's job")
            .await;

        let out = Command::new(PRISM)
            .args([
                "webhooks",
                "create",
                "--tenant",
                "gamma",
                "--url",
                &format!("http://127.0.0.1:9/hook-{round}"),
                "--events",
                "batch.completed",
                "--allow-private-targets",
                "--data-dir",
            ])
            .arg(env.data_dir())
            .envs(env.backend.env())
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "webhooks create failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = String::from_utf8(out.stdout).unwrap();
        let endpoint = printed.split('\t').next().unwrap().to_owned();
        let listed = env
            .get(&key, "/v1/webhook_endpoints")
            .await
            .text()
            .await
            .unwrap();
        assert!(listed.contains(&endpoint), "{endpoint} not in {listed}");

        env.wait_for(&key, &job, &["completed"], Duration::from_secs(20))
            .await;

        revoke_key_on(&env.backend, &env.data_dir(), &key).await;
        eventually(
            Duration::from_secs(20),
            "the revoked key is refused",
            || async { env.get(&key, "/v1/async").await.status() == 401 },
        )
        .await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut ids = Vec::new();
    let mut slowest = Duration::ZERO;
    for submitter in submitters {
        let seen = submitter.await.unwrap();
        let refused: Vec<&u16> = seen.statuses.iter().filter(|s| **s != 202).collect();
        assert!(refused.is_empty(), "submits refused: {refused:?}");
        ids.extend(seen.ids);
        slowest = slowest.max(seen.slowest);
    }
    assert!(!ids.is_empty());
    for id in &ids {
        env.wait_for(&env.alpha, id, &["completed"], Duration::from_secs(20))
            .await;
    }
    eprintln!(
        "{} submits beside {ROUNDS} rounds of CLI writes; slowest answer {:.1} ms",
        ids.len(),
        slowest.as_secs_f64() * 1000.0
    );
}

//! Behaviour only the embedded backend has: the data-directory lock and the first-run key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{PRISM, Setup, eventually, start};
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

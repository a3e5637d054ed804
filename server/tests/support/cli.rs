//! Running `prism` as a client of the test's Prism (`PRISM_BASE_URL`, `PRISM_API_KEY`), for the
//! CLI suites: a command, one that must succeed (its stdout, or its `--json` output read) or fail,
//! an input file in the test's directory and the JSON lines of a file it wrote.

use std::path::Path;
use std::process::{Output, Stdio};

use serde_json::Value;
use tokio::process::Command;

use super::{Env, PRISM};

pub fn cli(env: &Env, key: &str) -> Command {
    let mut command = Command::new(PRISM);
    command
        .env("PRISM_BASE_URL", format!("{}/v1", env.base()))
        .env("PRISM_API_KEY", key)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

/// Runs `prism ARGS` as tenant alpha; fails the test unless it exits 0.
pub async fn run_ok(env: &Env, args: &[&str]) -> String {
    let output = cli(env, &env.alpha).args(args).output().await.unwrap();
    assert!(
        output.status.success(),
        "prism {args:?}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

pub async fn run_json(env: &Env, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = run_ok(env, &args).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("prism {args:?}: {e}: {out}"))
}

pub async fn run_failing(env: &Env, key: &str, args: &[&str]) -> Output {
    let output = cli(env, key).args(args).output().await.unwrap();
    assert!(!output.status.success(), "prism {args:?} succeeded");
    output
}

pub fn write_input(env: &Env, name: &str, text: &str) -> std::path::PathBuf {
    let path = env.dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

pub fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

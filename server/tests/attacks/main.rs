//! The attack battery as a standing suite: what a hostile tenant or a broken client tries,
//! on whichever backend `PRISM_TEST_BACKEND` names. Tenant isolation of every object type,
//! authentication variants on every route family, malformed bodies per endpoint, and races.
//! Raw-socket refusals that only `prism serve` answers itself live in `hardening.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

#[path = "../support/mod.rs"]
mod support;

mod auth;
mod bodies;
mod isolation;
mod races;

use std::time::Duration;

use serde_json::{Value, json};
use support::Env;

/// Long enough for a small batch on the emulator's queues.
const SOON: Duration = Duration::from_secs(60);

/// One JSONL batch line for the chat endpoint.
fn batch_line(custom_id: &str, model: &str, content: &str) -> String {
    let mut line = json!({
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    })
    .to_string();
    line.push('\n');
    line
}

fn batch_body(file: &str) -> Value {
    json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"})
}

/// The ids of one list page, asserting the list answered 200.
async fn list_ids(env: &Env, key: &str, path: &str) -> Vec<String> {
    let response = env.get(key, path).await;
    assert_eq!(response.status(), 200, "GET {path}");
    let page: Value = response.json().await.unwrap();
    page["data"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: {page}"))
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Everything a tenant owns, by list: async jobs, scheduled jobs, files, batches.
async fn everything_listed(env: &Env, key: &str) -> Vec<String> {
    let mut all = Vec::new();
    for path in ["/v1/async", "/v1/scheduled", "/v1/files", "/v1/batches"] {
        all.extend(list_ids(env, key, &format!("{path}?limit=100")).await);
    }
    all
}

//! Batches for the suites: an input file uploaded, a batch started and waited for, and its
//! output and error lines read back (each custom id exactly once).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Env, chat_body};

impl Env {
    /// Uploads `bytes` as a batch input file and returns its id, asserting the 200.
    pub async fn upload_batch_file(&self, key: &str, bytes: &[u8]) -> String {
        let response = self
            .upload(
                key,
                &[("purpose", "", b"batch"), ("file", "input.jsonl", bytes)],
            )
            .await;
        assert_eq!(response.status(), 200);
        let file: Value = response.json().await.unwrap();
        file["id"].as_str().unwrap().to_owned()
    }

    /// Polls a batch until its status is one of `statuses`; fails after `within`.
    pub async fn wait_for_batch(&self, id: &str, statuses: &[&str], within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let batch: Value = self
                .get(&self.alpha, &format!("/v1/batches/{id}"))
                .await
                .json()
                .await
                .unwrap();
            if statuses.iter().any(|s| batch["status"] == *s) {
                return batch;
            }
            assert!(
                Instant::now() < deadline,
                "batch {id} still {} after {within:?}: {batch}",
                batch["status"]
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Uploads `input` as tenant alpha's batch file and creates a 24 h chat-completions batch
    /// over it; returns the batch id.
    pub async fn start_batch(&self, input: &str) -> String {
        let file = self.upload_batch_file(&self.alpha, input.as_bytes()).await;
        let response = self
            .post(
                &self.alpha,
                "/v1/batches",
                &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            )
            .await;
        assert_eq!(response.status(), 200);
        let created: Value = response.json().await.unwrap();
        created["id"].as_str().unwrap().to_owned()
    }

    /// The output and error lines of a finished batch, asserting that each custom id appears
    /// once across both and that `lines` ids appear in all.
    pub async fn finished_batch_lines(
        &self,
        batch: &Value,
        lines: usize,
    ) -> (Vec<Value>, Vec<Value>) {
        let output = self.file_lines(&batch["output_file_id"]).await;
        let errors = self.file_lines(&batch["error_file_id"]).await;
        let mut seen = std::collections::HashSet::new();
        for line in output.iter().chain(&errors) {
            let custom_id = line["custom_id"].as_str().unwrap().to_owned();
            assert!(seen.insert(custom_id.clone()), "{custom_id} appears twice");
        }
        assert_eq!(seen.len(), lines, "every custom_id appears");
        (output, errors)
    }

    /// The JSON lines of one of tenant alpha's files; none for a `null` file id.
    pub async fn file_lines(&self, file_id: &Value) -> Vec<Value> {
        let Some(id) = file_id.as_str() else {
            return Vec::new();
        };
        let text = self
            .get(&self.alpha, &format!("/v1/files/{id}/content"))
            .await
            .text()
            .await
            .unwrap();
        assert!(text.is_empty() || text.ends_with('\n'));
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// A JSONL batch input of `count` chat lines for `model`, custom ids `{prefix}-{i}`.
pub fn chat_batch_input(prefix: &str, model: &str, count: usize) -> String {
    let mut input = String::new();
    for i in 0..count {
        input.push_str(
            &json!({"custom_id": format!("{prefix}-{i}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": chat_body(model, &i.to_string())})
            .to_string(),
        );
        input.push('\n');
    }
    input
}

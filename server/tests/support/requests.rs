//! Requests a test makes as a tenant: HTTP verbs on the running server, chat completions sync
//! or async, uploads, scheduled and async jobs, and waiting for a job's status.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Env, chat_body, rfc3339_in};

/// Multipart parts: `(name, filename, bytes)`; the filename only matters for `file`.
pub type Parts<'a> = &'a [(&'a str, &'a str, &'a [u8])];

impl Env {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    pub async fn chat(&self, key: &str, body: Value, async_mode: bool) -> reqwest::Response {
        let mut req = self
            .http
            .post(self.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body);
        if async_mode {
            req = req.header("x-prism-async", "true");
        }
        req.send().await.unwrap()
    }

    pub async fn post(&self, key: &str, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// `POST /v1/files` with the parts in the given order (`("file", name, bytes)` for the file).
    pub async fn upload(&self, key: &str, parts: Parts<'_>) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new();
        for (name, filename, bytes) in parts {
            form = if *name == "file" {
                form.part(
                    name.to_string(),
                    reqwest::multipart::Part::bytes(bytes.to_vec()).file_name(filename.to_string()),
                )
            } else {
                form.text(name.to_string(), String::from_utf8(bytes.to_vec()).unwrap())
            };
        }
        self.http
            .post(self.url("/v1/files"))
            .bearer_auth(key)
            .multipart(form)
            .send()
            .await
            .unwrap()
    }

    /// Schedules a completion `in_ms` from now and returns its id, asserting the 201.
    pub async fn schedule(&self, key: &str, model: &str, content: &str, in_ms: i64) -> String {
        let body = json!({"scheduled_at": rfc3339_in(in_ms), "request": chat_body(model, content)});
        let response = self.post(key, "/v1/scheduled", &body).await;
        assert_eq!(response.status(), 201);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "pending");
        job["id"].as_str().unwrap().to_owned()
    }

    /// Submits an async job and returns its id, asserting the 202.
    pub async fn submit(&self, key: &str, model: &str, content: &str) -> String {
        let response = self.chat(key, chat_body(model, content), true).await;
        assert_eq!(response.status(), 202);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "pending");
        job["id"].as_str().unwrap().to_owned()
    }

    pub async fn get(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete(&self, key: &str, path: &str) -> reqwest::Response {
        self.http
            .delete(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    /// The job at its own route: `/v1/scheduled/{id}` for `sched_` ids, `/v1/async/{id}` else.
    pub async fn job(&self, key: &str, id: &str) -> Value {
        let response = self.get(key, &job_path(id)).await;
        assert_eq!(response.status(), 200, "GET job {id}");
        response.json().await.unwrap()
    }

    /// Polls until the job's status is one of `statuses`; fails after `within`.
    pub async fn wait_for(
        &self,
        key: &str,
        id: &str,
        statuses: &[&str],
        within: Duration,
    ) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let job = self.job(key, id).await;
            if statuses.iter().any(|s| job["status"] == *s) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id} still {} after {within:?}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn job_path(id: &str) -> String {
    if id.starts_with("sched_") {
        format!("/v1/scheduled/{id}")
    } else {
        format!("/v1/async/{id}")
    }
}

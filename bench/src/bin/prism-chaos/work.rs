//! The work of a run, as a client sees it: async jobs from concurrent clients and scheduled jobs
//! (each with an `Idempotency-Key`, retried through kills until accepted), one batch, and the
//! polling that waits for every one of them to end.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use prism_testkit::chaos::Submitted;
use serde_json::{Value, json};

/// How long a submit keeps retrying through restarts before the driver gives up on it.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(300);

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub key: String,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs `body` until a 2xx answers, retrying connection errors, 5xx and 429 (a kill or a
    /// restart under way); returns the answer's JSON.
    async fn post_until_accepted(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + SUBMIT_PATIENCE;
        loop {
            let mut request = self
                .http
                .post(self.url(path))
                .bearer_auth(&self.key)
                .json(body);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            match request.send().await {
                Ok(response) if response.status().is_success() => {
                    return Ok(response.json().await?);
                }
                Ok(response)
                    if !(response.status().is_server_error() || response.status() == 429) =>
                {
                    bail!(
                        "{path} answered {}: {}",
                        response.status(),
                        response.text().await.unwrap_or_default()
                    );
                }
                _ if Instant::now() > deadline => {
                    bail!("{path} not accepted within {SUBMIT_PATIENCE:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// GETs `path` until it answers 200 (retrying through restarts).
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let deadline = Instant::now() + SUBMIT_PATIENCE;
        loop {
            let response = self
                .http
                .get(self.url(path))
                .bearer_auth(&self.key)
                .send()
                .await;
            match response {
                Ok(response) if response.status() == 200 => return Ok(response.json().await?),
                Ok(response) if response.status().is_client_error() => {
                    bail!("GET {path} answered {}", response.status())
                }
                _ if Instant::now() > deadline => bail!("GET {path} kept failing"),
                _ => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.key)
            .send()
            .await?;
        if response.status() != 200 {
            bail!("GET {path} answered {}", response.status());
        }
        Ok(response.text().await?)
    }

    /// Submits one job under `key` (async, or scheduled `due_in_ms` from now) and records every
    /// id the retries were answered with.
    async fn submit_one(
        &self,
        model: &str,
        prompt: String,
        idempotency: &str,
        due_in_ms: Option<i64>,
    ) -> anyhow::Result<Submitted> {
        let chat = json!({"model": model, "messages": [{"role": "user", "content": prompt}]});
        let (path, body) = match due_in_ms {
            None => ("/v1/chat/completions", chat),
            // Computed once: a replay must carry the same body, `scheduled_at` included.
            Some(ms) => (
                "/v1/scheduled",
                json!({"scheduled_at": rfc3339_in(ms), "request": chat}),
            ),
        };
        let headers: &[(&str, &str)] = match due_in_ms {
            None => &[("idempotency-key", idempotency), ("x-prism-async", "true")],
            Some(_) => &[("idempotency-key", idempotency)],
        };
        let job = self.post_until_accepted(path, &body, headers).await?;
        let id = job["id"].as_str().context("job without an id")?.to_owned();
        // Asked once more: a replay must name the same job.
        let again = self.post_until_accepted(path, &body, headers).await?;
        let mut ids = vec![id];
        if let Some(replayed) = again["id"].as_str()
            && replayed != ids[0]
        {
            ids.push(replayed.to_owned());
        }
        Ok(Submitted { prompt, ids })
    }
}

/// An RFC 3339 UTC time `offset_ms` from now.
fn rfc3339_in(offset_ms: i64) -> String {
    use prism_core::Clock;
    let now = prism_core::SystemClock.now();
    prism_core::clock::format_rfc3339(prism_core::Timestamp(now.millis() + offset_ms))
}

/// `jobs` async jobs from `clients` concurrent clients (each submits its share in turn).
pub async fn submit_async(
    api: &Api,
    model: &str,
    run: &str,
    jobs: usize,
    clients: usize,
    rate: f64,
) -> Vec<anyhow::Result<Submitted>> {
    let api = Arc::new(api.clone());
    let per_client = |client: usize| (client..jobs).step_by(clients.max(1));
    let start = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|client| {
            let (api, model, run) = (Arc::clone(&api), model.to_owned(), run.to_owned());
            let mine: Vec<usize> = per_client(client).collect();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in mine {
                    // Paced: job i is due i / rate seconds after the start, whichever client
                    // sends it, so the load is steady for jobs / rate seconds (a soak).
                    if rate > 0.0 {
                        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate))
                            .await;
                    }
                    let key = format!("{run}-async-{i}");
                    out.push(
                        api.submit_one(&model, format!("async {run} {i}"), &key, None)
                            .await,
                    );
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        match task.await {
            Ok(results) => all.extend(results),
            Err(err) => all.push(Err(err.into())),
        }
    }
    all
}

/// `jobs` scheduled jobs, due evenly across `spread` starting `lead` from now.
pub async fn submit_scheduled(
    api: &Api,
    model: &str,
    run: &str,
    jobs: usize,
    lead: Duration,
    spread: Duration,
) -> Vec<anyhow::Result<Submitted>> {
    let step = spread.as_millis() as i64 / jobs.max(1) as i64;
    let submits = (0..jobs).map(|i| {
        let due = lead.as_millis() as i64 + step * i as i64;
        let key = format!("{run}-sched-{i}");
        let prompt = format!("scheduled {run} {i}");
        async move { api.submit_one(model, prompt, &key, Some(due)).await }
    });
    futures::stream::iter(submits).buffered(16).collect().await
}

/// The batch's input: `lines` chat lines for `model`, custom ids `line-<i>`, prompts
/// `line <run> <i>`.
pub fn batch_input(model: &str, run: &str, lines: usize) -> (String, HashMap<String, String>) {
    let mut input = String::new();
    let mut prompts = HashMap::new();
    for i in 0..lines {
        let custom_id = format!("line-{i}");
        let prompt = format!("line {run} {i}");
        input.push_str(
            &json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                    "body": {"model": model, "messages": [{"role": "user", "content": prompt}]}})
            .to_string(),
        );
        input.push('\n');
        prompts.insert(custom_id, prompt);
    }
    (input, prompts)
}

/// Uploads the input and creates the batch; returns its id.
pub async fn create_batch(api: &Api, input: String) -> anyhow::Result<String> {
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part(
            "file",
            reqwest::multipart::Part::bytes(input.into_bytes()).file_name("chaos.jsonl"),
        );
    let response = api
        .http
        .post(api.url("/v1/files"))
        .bearer_auth(&api.key)
        .multipart(form)
        .send()
        .await?;
    if response.status() != 200 {
        bail!("upload answered {}", response.status());
    }
    let file: Value = response.json().await?;
    let body = json!({"input_file_id": file["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"});
    let batch = api.post_until_accepted("/v1/batches", &body, &[]).await?;
    Ok(batch["id"]
        .as_str()
        .context("batch without an id")?
        .to_owned())
}

pub fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "expired")
}

/// Polls every job until it is terminal or `deadline` passes; returns each job's last object.
pub async fn wait_for_jobs(
    api: &Api,
    ids: Vec<String>,
    deadline: Instant,
) -> BTreeMap<String, Value> {
    let mut last: BTreeMap<String, Value> = BTreeMap::new();
    let mut open = ids;
    while !open.is_empty() {
        let polls = open.iter().map(|id| {
            let path = if id.starts_with("sched_") {
                format!("/v1/scheduled/{id}")
            } else {
                format!("/v1/async/{id}")
            };
            async move { (id.clone(), api.get_json(&path).await) }
        });
        let seen: Vec<_> = futures::stream::iter(polls)
            .buffer_unordered(32)
            .collect()
            .await;
        open.clear();
        for (id, job) in seen {
            let done = match &job {
                Ok(job) => is_terminal(job["status"].as_str().unwrap_or("")),
                Err(_) => false,
            };
            if !done {
                open.push(id.clone());
            }
            if let Ok(job) = job {
                last.insert(id, job);
            }
        }
        if open.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    last
}

/// Polls the batch until it is terminal or `deadline` passes.
pub async fn wait_for_batch(api: &Api, id: &str, deadline: Instant) -> anyhow::Result<Value> {
    loop {
        let batch = api.get_json(&format!("/v1/batches/{id}")).await?;
        if is_terminal(batch["status"].as_str().unwrap_or("")) || Instant::now() > deadline {
            return Ok(batch);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The JSON lines of a file; none for a `null` id.
pub async fn file_lines(api: &Api, file_id: &Value) -> anyhow::Result<Vec<Value>> {
    let Some(id) = file_id.as_str() else {
        return Ok(Vec::new());
    };
    let text = api.get_text(&format!("/v1/files/{id}/content")).await?;
    text.lines()
        .map(|line| serde_json::from_str(line).context("a batch result line is not JSON"))
        .collect()
}

//! End-to-end async throughput: submit N jobs as fast as a bounded number of concurrent
//! clients can, then wait until every one has completed, and report jobs per second from the
//! first submit to the last completion.
//!
//! Waiting polls either the job list (`--poll list`: two `limit=1` queries per round for
//! `pending` and `running` jobs, so the waiting itself costs the server almost nothing; every
//! job's final status is then checked by paging through the list) or every job by id
//! (`--poll each`: what a naive client does, which adds one `GET` per job to the server's load).
//! Use a tenant of its own for this mode: the list queries see all of the tenant's jobs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::ValueEnum;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::{Target, chat_body, classify, status_kind};
use crate::stats::{ErrorCounts, Latencies, LatencySummary};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PollMode {
    /// Watch the `pending` and `running` lists until both are empty, then verify every job.
    List,
    /// Poll each job by id, oldest first, with `--concurrency` pollers.
    Each,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub jobs: usize,
    pub concurrency: usize,
    pub model: String,
    pub poll: PollMode,
    pub poll_interval: Duration,
    /// Give up when the jobs have not all finished this long after the first submit.
    pub deadline: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub url: String,
    pub model: String,
    pub jobs: u64,
    pub concurrency: u64,
    pub poll: String,
    pub submitted: u64,
    pub submit_errors: u64,
    pub submit_error_kinds: ErrorCounts,
    /// First submit sent to last 202 received.
    pub submit_s: f64,
    pub submit_rate: f64,
    /// Closed-loop latency of each submit (the clients wait for each answer).
    pub submit_latency_ms: LatencySummary,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Submitted jobs not seen finished (missing, or still running at the deadline).
    pub unfinished: u64,
    /// First submit sent to the last completion observed.
    pub e2e_s: f64,
    /// Completed jobs per second over `e2e_s`.
    pub jobs_per_s: f64,
    /// From the last 202 to the last completion observed.
    pub drain_s: f64,
    pub poll_requests: u64,
}

impl Summary {
    pub fn human(&self) -> String {
        format!(
            "e2e {url} model={model}: {jobs} jobs, {conc} concurrent submitters, poll={poll}\n  \
             submit: {submitted} accepted, {serr} errors ({skinds}) in {ss:.3}s = {srate:.0} jobs/s; \
             latency ms {slat}\n  \
             finished: {completed} completed, {failed} failed, {cancelled} cancelled, \
             {unfinished} unfinished; last completion {e2e:.3}s after first submit \
             ({drain:.3}s after last submit)\n  \
             end to end: {jps:.0} jobs/s ({polls} poll requests)",
            url = self.url,
            model = self.model,
            jobs = self.jobs,
            conc = self.concurrency,
            poll = self.poll,
            submitted = self.submitted,
            serr = self.submit_errors,
            skinds = self.submit_error_kinds.line(),
            ss = self.submit_s,
            srate = self.submit_rate,
            slat = self.submit_latency_ms.line(),
            completed = self.completed,
            failed = self.failed,
            cancelled = self.cancelled,
            unfinished = self.unfinished,
            e2e = self.e2e_s,
            drain = self.drain_s,
            jps = self.jobs_per_s,
            polls = self.poll_requests,
        )
    }

    /// True when every requested job was accepted and completed.
    pub fn all_completed(&self) -> bool {
        self.completed == self.jobs
    }
}

#[derive(Debug, Deserialize)]
struct JobRef {
    id: String,
    status: String,
}

#[derive(Debug, Deserialize)]
struct ListPage {
    data: Vec<JobRef>,
    has_more: bool,
    last_id: Option<String>,
}

fn is_terminal(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled")
}

struct Api {
    client: Client,
    target: Target,
    submit_headers: HeaderMap,
    read_headers: HeaderMap,
    body: Bytes,
    polls: AtomicU64,
}

impl Api {
    /// Submits one job; the error is a failure kind for counting.
    async fn submit(&self) -> Result<String, String> {
        let response = self
            .client
            .post(self.target.chat_url())
            .headers(self.submit_headers.clone())
            .body(self.body.clone())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| classify(&e))?;
        if status != StatusCode::ACCEPTED {
            return Err(status_kind(status));
        }
        let job: JobRef = serde_json::from_slice(&body).map_err(|_| "bad job json".to_owned())?;
        Ok(job.id)
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> anyhow::Result<T> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .get(url)
            .headers(self.read_headers.clone())
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .with_context(|| format!("GET {url}"))?;
        if status != StatusCode::OK {
            anyhow::bail!(
                "GET {url}: {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(300)
                    .collect::<String>()
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {url}: unexpected body"))
    }

    async fn list(
        &self,
        status: Option<&str>,
        limit: u32,
        after: Option<&str>,
    ) -> anyhow::Result<ListPage> {
        let mut url = format!("{}?limit={limit}", self.target.list_url());
        if let Some(status) = status {
            url.push_str("&status=");
            url.push_str(status);
        }
        if let Some(after) = after {
            url.push_str("&after=");
            url.push_str(after);
        }
        self.get_json(&url).await
    }

    async fn job_status(&self, id: &str) -> anyhow::Result<String> {
        let job: JobRef = self.get_json(&self.target.job_url(id)).await?;
        Ok(job.status)
    }
}

/// What the submitters produced: ids in submission order (None where the submit failed).
struct Submitted {
    ids: Vec<Option<String>>,
    latency: Latencies,
    errors: ErrorCounts,
    finished: Instant,
}

async fn submit_all(api: &Arc<Api>, plan: &Plan) -> anyhow::Result<Submitted> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut submitters = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (api, next, jobs) = (Arc::clone(api), Arc::clone(&next), plan.jobs);
        submitters.spawn(async move {
            let mut ids = Vec::new();
            let mut latency = Latencies::new()?;
            let mut errors = ErrorCounts::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    break;
                }
                let sent = Instant::now();
                match api.submit().await {
                    Ok(id) => {
                        latency.record(sent.elapsed());
                        ids.push((i, id));
                    }
                    Err(kind) => errors.add(kind),
                }
            }
            anyhow::Ok((ids, latency, errors))
        });
    }
    let mut all = Submitted {
        ids: vec![None; plan.jobs],
        latency: Latencies::new()?,
        errors: ErrorCounts::default(),
        finished: Instant::now(),
    };
    while let Some(joined) = submitters.join_next().await {
        let (ids, latency, errors) = joined.context("a submitter task failed")??;
        for (i, id) in ids {
            if let Some(slot) = all.ids.get_mut(i) {
                *slot = Some(id);
            }
        }
        all.latency.merge(&latency)?;
        all.errors.merge(errors);
    }
    all.finished = Instant::now();
    Ok(all)
}

/// Final statuses of the jobs and when the last completion was observed.
struct Finished {
    statuses: HashMap<String, String>,
    last: Instant,
}

/// Polls each id until it is terminal, oldest first; `last` is when the last one was seen done.
async fn poll_each(
    api: &Arc<Api>,
    ids: Vec<String>,
    plan: &Plan,
    deadline: Instant,
) -> anyhow::Result<Finished> {
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let mut pollers = JoinSet::new();
    for _ in 0..plan.concurrency.max(1) {
        let (api, ids, next, interval) = (
            Arc::clone(api),
            Arc::clone(&ids),
            Arc::clone(&next),
            plan.poll_interval,
        );
        pollers.spawn(async move {
            let mut seen = Vec::new();
            let mut last: Option<Instant> = None;
            while let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) {
                loop {
                    if Instant::now() > deadline {
                        anyhow::bail!("deadline passed while job {id} was still unfinished");
                    }
                    match api.job_status(id).await {
                        Ok(status) if is_terminal(&status) => {
                            let now = Instant::now();
                            last = Some(last.map_or(now, |l| l.max(now)));
                            seen.push((id.clone(), status));
                            break;
                        }
                        Ok(_) => {}
                        Err(error) => eprintln!("poll {id}: {error:#}"),
                    }
                    tokio::time::sleep(interval).await;
                }
            }
            anyhow::Ok((seen, last))
        });
    }
    let mut finished = Finished {
        statuses: HashMap::new(),
        last: Instant::now(),
    };
    let mut last_seen: Option<Instant> = None;
    while let Some(joined) = pollers.join_next().await {
        let (seen, last) = joined.context("a poller task failed")??;
        finished.statuses.extend(seen);
        if let Some(l) = last {
            last_seen = Some(last_seen.map_or(l, |prev| prev.max(l)));
        }
    }
    finished.last = last_seen.unwrap_or_else(Instant::now);
    Ok(finished)
}

/// Waits until neither `pending` nor `running` lists anything, then reads every job's status
/// from the list; jobs that slipped back to pending meanwhile are polled by id.
async fn poll_list(
    api: &Arc<Api>,
    ids: Vec<String>,
    plan: &Plan,
    deadline: Instant,
) -> anyhow::Result<Finished> {
    let mut last = loop {
        if Instant::now() > deadline {
            anyhow::bail!("deadline passed with jobs still pending or running");
        }
        let pending = api.list(Some("pending"), 1, None).await?;
        if pending.data.is_empty() {
            let running = api.list(Some("running"), 1, None).await?;
            if running.data.is_empty() {
                break Instant::now();
            }
        }
        tokio::time::sleep(plan.poll_interval).await;
    };

    // Verification, after the clock has stopped: page newest first until all ours were seen.
    let mut wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut statuses = HashMap::with_capacity(ids.len());
    let mut after: Option<String> = None;
    while !wanted.is_empty() {
        let page = api.list(None, 100, after.as_deref()).await?;
        for job in page.data {
            if wanted.remove(job.id.as_str()) {
                statuses.insert(job.id, job.status);
            }
        }
        if !page.has_more {
            break;
        }
        after = page.last_id;
    }
    let stragglers: Vec<String> = ids
        .iter()
        .filter(|id| statuses.get(id.as_str()).is_none_or(|s| !is_terminal(s)))
        .cloned()
        .collect();
    if !stragglers.is_empty() {
        eprintln!(
            "{} jobs were not finished when the lists emptied; polling them by id",
            stragglers.len()
        );
        let more = poll_each(api, stragglers, plan, deadline).await?;
        last = last.max(more.last);
        statuses.extend(more.statuses);
    }
    Ok(Finished { statuses, last })
}

pub async fn run(client: Client, target: &Target, plan: &Plan) -> anyhow::Result<Summary> {
    let api = Arc::new(Api {
        client,
        target: target.clone(),
        submit_headers: target.headers(true)?,
        read_headers: target.headers(false)?,
        body: chat_body(&plan.model)?,
        polls: AtomicU64::new(0),
    });
    let first_submit = Instant::now();
    let deadline = first_submit + plan.deadline;
    let submitted = submit_all(&api, plan).await?;
    let ids: Vec<String> = submitted.ids.iter().flatten().cloned().collect();
    let finished = match plan.poll {
        PollMode::List => poll_list(&api, ids.clone(), plan, deadline).await?,
        PollMode::Each => poll_each(&api, ids.clone(), plan, deadline).await?,
    };

    let count = |wanted: &str| {
        ids.iter()
            .filter(|id| {
                finished
                    .statuses
                    .get(id.as_str())
                    .is_some_and(|s| s == wanted)
            })
            .count() as u64
    };
    let (completed, failed, cancelled) = (count("completed"), count("failed"), count("cancelled"));
    let submit_s = submitted
        .finished
        .duration_since(first_submit)
        .as_secs_f64();
    let e2e_s = finished
        .last
        .saturating_duration_since(first_submit)
        .as_secs_f64();
    let per_second = |n: u64, secs: f64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
    Ok(Summary {
        url: target.base().to_owned(),
        model: plan.model.clone(),
        jobs: plan.jobs as u64,
        concurrency: plan.concurrency as u64,
        poll: format!("{:?}", plan.poll).to_lowercase(),
        submitted: ids.len() as u64,
        submit_errors: submitted.errors.total(),
        submit_error_kinds: submitted.errors,
        submit_s,
        submit_rate: per_second(ids.len() as u64, submit_s),
        submit_latency_ms: submitted.latency.summary(),
        completed,
        failed,
        cancelled,
        unfinished: (plan.jobs as u64).saturating_sub(completed + failed + cancelled),
        e2e_s,
        jobs_per_s: per_second(completed, e2e_s),
        drain_s: finished
            .last
            .saturating_duration_since(submitted.finished)
            .as_secs_f64(),
        poll_requests: api.polls.load(Ordering::Relaxed),
    })
}

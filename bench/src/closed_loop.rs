//! Closed-loop load: `concurrency` clients each send a synchronous chat completion, wait for the
//! whole answer, and send the next, for a fixed time. What it measures is throughput at
//! saturation (the most a server answers per second on this machine), which an open-loop run
//! at a fixed rate cannot show; run it against the mock and through Prism to get Prism's share.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;

use crate::client::{Target, chat_body, classify, status_kind};
use crate::stats::{ErrorCounts, Latencies, LatencySummary};

#[derive(Debug, Clone)]
pub struct Plan {
    pub concurrency: usize,
    /// Measured period, after the warm-up.
    pub duration: Duration,
    /// Run the same way first, unmeasured: opens the connections.
    pub warmup: Duration,
    pub model: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub mode: String,
    pub url: String,
    pub model: String,
    pub concurrency: usize,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: ErrorCounts,
    /// Successful answers per second over the measured period.
    pub requests_per_s: f64,
    /// Each request, from send to the end of its answer.
    pub latency_ms: LatencySummary,
}

impl Summary {
    pub fn human(&self) -> String {
        format!(
            "closed loop {url} model={model}: {conc} clients for {dur:.1}s (after {warm:.1}s \
             warm-up): {ok} ok, {errors} errors ({kinds}); {rps:.0} requests/s\n  \
             latency ms: {lat}",
            url = self.url,
            model = self.model,
            conc = self.concurrency,
            dur = self.duration_s,
            warm = self.warmup_s,
            ok = self.ok,
            errors = self.errors,
            kinds = self.error_kinds.line(),
            rps = self.requests_per_s,
            lat = self.latency_ms.line(),
        )
    }
}

/// What one client saw in the measured period.
struct ClientTally {
    latencies: Latencies,
    errors: ErrorCounts,
}

async fn one_client(
    client: Client,
    url: String,
    headers: reqwest::header::HeaderMap,
    body: bytes::Bytes,
    measure_from: Instant,
    end: Instant,
) -> anyhow::Result<ClientTally> {
    let mut tally = ClientTally {
        latencies: Latencies::new()?,
        errors: ErrorCounts::default(),
    };
    loop {
        let sent = Instant::now();
        if sent >= end {
            return Ok(tally);
        }
        let outcome = match client
            .post(&url)
            .headers(headers.clone())
            .body(body.clone())
            .send()
            .await
        {
            Ok(response) => {
                let status = response.status();
                match response.bytes().await {
                    Ok(_) if status == StatusCode::OK => Ok(()),
                    Ok(_) => Err(status_kind(status)),
                    Err(e) => Err(classify(&e)),
                }
            }
            Err(e) => Err(classify(&e)),
        };
        let done = Instant::now();
        // A request that straddles the warm-up's end or the deadline ran under another load
        // (connections opening, clients stopping): only those wholly inside the period count.
        if sent < measure_from || done > end {
            continue;
        }
        match outcome {
            Ok(()) => tally.latencies.record(done - sent),
            Err(kind) => tally.errors.add(kind),
        }
    }
}

/// Runs the plan against `target` on the current tokio runtime.
pub async fn run(client: Client, target: &Target, plan: &Plan) -> anyhow::Result<Summary> {
    if plan.concurrency == 0 || plan.duration.is_zero() {
        anyhow::bail!("--concurrency and --duration must be positive");
    }
    let url = target.chat_url();
    let headers = target.headers(false)?;
    let body = chat_body(&plan.model)?;
    let measure_from = Instant::now() + plan.warmup;
    let end = measure_from + plan.duration;
    let mut clients = JoinSet::new();
    for _ in 0..plan.concurrency {
        clients.spawn(one_client(
            client.clone(),
            url.clone(),
            headers.clone(),
            body.clone(),
            measure_from,
            end,
        ));
    }
    let mut latencies = Latencies::new()?;
    let mut errors = ErrorCounts::default();
    while let Some(joined) = clients.join_next().await {
        let tally = joined.context("a client task failed")??;
        latencies.merge(&tally.latencies)?;
        errors.merge(tally.errors);
    }
    let ok = latencies.count();
    Ok(Summary {
        mode: "closed".to_owned(),
        url,
        model: plan.model.clone(),
        concurrency: plan.concurrency,
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        ok,
        errors: errors.total(),
        error_kinds: errors,
        requests_per_s: ok as f64 / plan.duration.as_secs_f64(),
        latency_ms: latencies.summary(),
    })
}

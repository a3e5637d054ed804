//! Open-loop load: requests leave on a fixed schedule whatever the responses do, and latency is
//! measured from each request's scheduled send time, so a slow server cannot hide its queueing
//! by slowing the generator down (no coordinated omission).
//!
//! The schedule is kept by a dedicated OS thread sleeping with `nanosleep` precision (tokio's
//! timer ticks in whole milliseconds, which would add up to a millisecond of the generator's own
//! lateness to every measurement); it hands each request to the tokio runtime as it comes due.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::client::{Target, chat_body, classify, status_kind};
use crate::stats::{ErrorCounts, Latencies, LatencySummary};

/// What each request is and which status counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `POST /v1/chat/completions`, expecting 200 and reading the whole answer.
    Sync,
    /// The same with `x-prism-async: true`, expecting 202.
    Submit,
    /// `GET /v1/async/{id}` of one job, expecting 200: a read while writes burst.
    Get,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Submit => "submit",
            Mode::Get => "get",
        }
    }

    fn expected(self) -> StatusCode {
        match self {
            Mode::Sync => StatusCode::OK,
            Mode::Submit => StatusCode::ACCEPTED,
            Mode::Get => StatusCode::OK,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    /// Requests per second.
    pub rate: f64,
    /// Measured period, after the warm-up.
    pub duration: Duration,
    /// Sent on the same schedule first, but not measured: opens connections, fills caches.
    pub warmup: Duration,
    /// Beyond this many requests in flight a due request is not sent and counts as dropped,
    /// so a stalled server cannot exhaust the generator's sockets.
    pub max_in_flight: usize,
    pub model: String,
    /// Where to write every measured request as CSV, for looking at when the slow ones happened.
    pub samples: Option<PathBuf>,
    /// The job `Get` reads.
    pub job_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub mode: String,
    pub url: String,
    pub model: String,
    pub target_rate: f64,
    pub duration_s: f64,
    pub warmup_s: f64,
    /// Measured requests that came due (sent or dropped).
    pub scheduled: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: ErrorCounts,
    pub dropped: u64,
    /// Successful measured responses per second, from the first measured send time to the last
    /// measured response.
    pub achieved_rate: f64,
    /// Successful requests, from scheduled send time to the end of the response body.
    pub latency_ms: LatencySummary,
    /// Successful requests, from when the generator actually started sending to the end of the
    /// body: excludes the generator's own lateness, but (unlike `latency_ms`) is not corrected
    /// for coordinated omission; shown to tell server time from generator time.
    pub service_ms: LatencySummary,
    /// How late the generator itself started requests (scheduled time to the request task
    /// running); large values mean the generator, not the server, was short of CPU.
    pub send_lag_ms: LatencySummary,
}

impl Summary {
    pub fn human(&self) -> String {
        format!(
            "{mode} {url} model={model}: {scheduled} requests over {dur:.1}s at {rate:.0}/s \
             (after {warm:.1}s warm-up): {ok} ok, {errors} errors ({kinds}), {dropped} dropped; \
             achieved {achieved:.1}/s\n  latency ms (from scheduled send): {lat}\n  \
             service ms (from actual send):   {svc}\n  generator send lag ms: {lag}",
            mode = self.mode,
            url = self.url,
            model = self.model,
            scheduled = self.scheduled,
            dur = self.duration_s,
            rate = self.target_rate,
            warm = self.warmup_s,
            ok = self.ok,
            errors = self.errors,
            kinds = self.error_kinds.line(),
            dropped = self.dropped,
            achieved = self.achieved_rate,
            lat = self.latency_ms.line(),
            svc = self.service_ms.line(),
            lag = self.send_lag_ms.line(),
        )
    }
}

enum Outcome {
    Ok,
    Failed(String),
    Dropped,
}

struct Sample {
    measured: bool,
    scheduled: Instant,
    started: Instant,
    done: Instant,
    outcome: Outcome,
}

/// Everything a request task needs, shared by all of them.
struct Request {
    client: Client,
    method: reqwest::Method,
    url: String,
    headers: HeaderMap,
    body: Bytes,
    expected: StatusCode,
}

impl Request {
    async fn send(&self) -> Outcome {
        let mut request = self
            .client
            .request(self.method.clone(), &self.url)
            .headers(self.headers.clone());
        if self.method == reqwest::Method::POST {
            request = request.body(self.body.clone());
        }
        let response = request.send().await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(classify(&e)),
        };
        let status = response.status();
        // The whole body is read: latency ends when the client has the complete answer.
        match response.bytes().await {
            Ok(_) if status == self.expected => Outcome::Ok,
            Ok(_) => Outcome::Failed(status_kind(status)),
            Err(e) => Outcome::Failed(classify(&e)),
        }
    }
}

fn count_for(period: Duration, rate: f64) -> u64 {
    // Saturating float-to-int conversion; rates and periods are small positive numbers.
    (period.as_secs_f64() * rate).round() as u64
}

/// Runs the plan against `target` on the current tokio runtime.
pub async fn run(client: Client, target: &Target, plan: &Plan) -> anyhow::Result<Summary> {
    if !(plan.rate.is_finite() && plan.rate > 0.0) {
        anyhow::bail!("--rate must be a positive number");
    }
    let (method, url) = match (plan.mode, &plan.job_id) {
        (Mode::Get, Some(id)) => (reqwest::Method::GET, target.job_url(id)),
        (Mode::Get, None) => anyhow::bail!("get needs --job-id"),
        _ => (reqwest::Method::POST, target.chat_url()),
    };
    let request = Arc::new(Request {
        client,
        method,
        url: url.clone(),
        headers: target.headers(plan.mode == Mode::Submit)?,
        body: chat_body(&plan.model)?,
        expected: plan.mode.expected(),
    });
    let warm = count_for(plan.warmup, plan.rate);
    let total = warm + count_for(plan.duration, plan.rate);
    let rate = plan.rate;
    let max_in_flight = plan.max_in_flight.max(1);
    let start = Instant::now() + Duration::from_millis(20);
    let runtime = tokio::runtime::Handle::current();
    let (tx, mut rx) = mpsc::unbounded_channel::<Sample>();

    let scheduler = std::thread::Builder::new()
        .name("loadgen-schedule".into())
        .spawn(move || {
            let in_flight = Arc::new(AtomicUsize::new(0));
            for i in 0..total {
                let scheduled = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if scheduled > now {
                    std::thread::sleep(scheduled - now);
                }
                let measured = i >= warm;
                if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                    let now = Instant::now();
                    let _ = tx.send(Sample {
                        measured,
                        scheduled,
                        started: now,
                        done: now,
                        outcome: Outcome::Dropped,
                    });
                    continue;
                }
                in_flight.fetch_add(1, Ordering::Relaxed);
                let (request, tx, in_flight) =
                    (Arc::clone(&request), tx.clone(), Arc::clone(&in_flight));
                runtime.spawn(async move {
                    let started = Instant::now();
                    let outcome = request.send().await;
                    let done = Instant::now();
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let _ = tx.send(Sample {
                        measured,
                        scheduled,
                        started,
                        done,
                        outcome,
                    });
                });
            }
        })
        .context("cannot start the scheduler thread")?;

    let mut latency = Latencies::new()?;
    let mut service = Latencies::new()?;
    let mut lag = Latencies::new()?;
    let mut errors = ErrorCounts::default();
    let (mut scheduled, mut dropped) = (0u64, 0u64);
    let first_measured = start + Duration::from_secs_f64(warm as f64 / rate);
    let mut last_done = first_measured;
    let mut csv = plan
        .samples
        .as_ref()
        .map(|_| String::from("scheduled_s,latency_ms,service_ms,send_lag_ms,outcome\n"));
    // The channel closes once the scheduler and every request task have let go of it.
    while let Some(sample) = rx.recv().await {
        if !sample.measured {
            continue;
        }
        scheduled += 1;
        if let Some(csv) = csv.as_mut() {
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            let outcome = match &sample.outcome {
                Outcome::Ok => "ok",
                Outcome::Failed(kind) => kind.as_str(),
                Outcome::Dropped => "dropped",
            };
            let _ = writeln!(
                csv,
                "{:.6},{:.3},{:.3},{:.3},{outcome}",
                sample
                    .scheduled
                    .saturating_duration_since(first_measured)
                    .as_secs_f64(),
                ms(sample.done.saturating_duration_since(sample.scheduled)),
                ms(sample.done.saturating_duration_since(sample.started)),
                ms(sample.started.saturating_duration_since(sample.scheduled)),
            );
        }
        match sample.outcome {
            Outcome::Ok => {
                latency.record(sample.done.saturating_duration_since(sample.scheduled));
                service.record(sample.done.saturating_duration_since(sample.started));
                last_done = last_done.max(sample.done);
            }
            Outcome::Failed(kind) => {
                errors.add(kind);
                last_done = last_done.max(sample.done);
            }
            Outcome::Dropped => {
                dropped += 1;
                continue;
            }
        }
        lag.record(sample.started.saturating_duration_since(sample.scheduled));
    }
    if scheduler.join().is_err() {
        anyhow::bail!("the scheduler thread panicked");
    }
    if let (Some(path), Some(csv)) = (&plan.samples, csv) {
        std::fs::write(path, csv).with_context(|| format!("cannot write {}", path.display()))?;
    }

    let window = last_done
        .saturating_duration_since(first_measured)
        .as_secs_f64();
    let ok = latency.count();
    Ok(Summary {
        mode: plan.mode.name().to_owned(),
        url,
        model: plan.model.clone(),
        target_rate: plan.rate,
        duration_s: plan.duration.as_secs_f64(),
        warmup_s: plan.warmup.as_secs_f64(),
        scheduled,
        ok,
        errors: errors.total(),
        error_kinds: errors,
        dropped,
        achieved_rate: if window > 0.0 {
            ok as f64 / window
        } else {
            0.0
        },
        latency_ms: latency.summary(),
        service_ms: service.summary(),
        send_lag_ms: lag.summary(),
    })
}

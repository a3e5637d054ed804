//! Markdown summary of a `bench/run.sh` run: reads the JSON summaries of each step and sets
//! them against the targets.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use crate::{e2e, open_loop};

/// Added p99 of a synchronous completion through Prism at 1,000 req/s, in ms.
pub const ADDED_P99_TARGET_MS: f64 = 1.0;
/// p99 of an async submit at 500 req/s, in ms.
pub const SUBMIT_P99_TARGET_MS: f64 = 2.0;
/// End-to-end async throughput, jobs per second.
pub const E2E_TARGET_JOBS_PER_S: f64 = 2000.0;

pub struct Inputs {
    pub direct: open_loop::Summary,
    pub prism: open_loop::Summary,
    pub submit: open_loop::Summary,
    pub e2e: e2e::Summary,
    pub peak_rss_kib: Option<u64>,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a summary of the expected kind", path.display()))
}

impl Inputs {
    pub fn load(
        direct: &Path,
        prism: &Path,
        submit: &Path,
        e2e: &Path,
        peak_rss_kib: Option<u64>,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            direct: read_json(direct)?,
            prism: read_json(prism)?,
            submit: read_json(submit)?,
            e2e: read_json(e2e)?,
            peak_rss_kib,
        })
    }
}

/// `PASS`, or `MISS` with how far off, for an upper bound.
fn at_most(value: f64, target: f64, failures: u64) -> String {
    if failures > 0 {
        format!("FAIL ({failures} errors)")
    } else if value <= target {
        "PASS".to_owned()
    } else {
        format!("MISS by {:.3} ms ({:.1}x)", value - target, value / target)
    }
}

/// `PASS`, or `MISS` with how far off, for a lower bound.
fn at_least(value: f64, target: f64, failures: u64) -> String {
    if failures > 0 {
        format!("FAIL ({failures} not completed)")
    } else if value >= target {
        "PASS".to_owned()
    } else {
        format!(
            "MISS by {:.0} ({:.0}% of target)",
            target - value,
            100.0 * value / target
        )
    }
}

fn latency_row(out: &mut String, name: &str, s: &open_loop::Summary) {
    let l = &s.latency_ms;
    let _ = writeln!(
        out,
        "| {name} | {rate:.0}/s | {ok} | {err} | {drop} | {ach:.1}/s | {p50:.3} | {p90:.3} | {p99:.3} | {p999:.3} | {max:.3} | {svc:.3} | {lag:.3} |",
        rate = s.target_rate,
        ok = s.ok,
        err = s.errors,
        drop = s.dropped,
        ach = s.achieved_rate,
        p50 = l.p50,
        p90 = l.p90,
        p99 = l.p99,
        p999 = l.p999,
        max = l.max,
        svc = s.service_ms.p99,
        lag = s.send_lag_ms.p99,
    );
}

pub fn markdown(i: &Inputs) -> String {
    let mut out = String::new();
    out.push_str(
        "| Scenario | Offered | OK | Errors | Dropped | Achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | p99 from actual send | generator lag p99 |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    latency_row(&mut out, "sync, mock directly", &i.direct);
    latency_row(&mut out, "sync, through Prism", &i.prism);
    latency_row(&mut out, "async submit (202)", &i.submit);
    out.push('\n');

    let added_p50 = i.prism.latency_ms.p50 - i.direct.latency_ms.p50;
    let added_p99 = i.prism.latency_ms.p99 - i.direct.latency_ms.p99;
    let sync_failures = i.prism.errors + i.prism.dropped + i.direct.errors + i.direct.dropped;
    let submit_failures = i.submit.errors + i.submit.dropped;
    let e = &i.e2e;
    let e2e_failures = e.jobs.saturating_sub(e.completed);
    out.push_str("| Target | Measured | Goal | Verdict |\n|---|---:|---:|---|\n");
    let _ = writeln!(
        out,
        "| Added latency, sync at {:.0} req/s | p99 {added_p99:+.3} ms (p50 {added_p50:+.3} ms) | p99 ≤ {ADDED_P99_TARGET_MS} ms | {} |",
        i.prism.target_rate,
        at_most(added_p99, ADDED_P99_TARGET_MS, sync_failures),
    );
    let _ = writeln!(
        out,
        "| … same, from actual send (generator lateness excluded) | p99 {:+.3} ms (p50 {:+.3} ms) | — | — |",
        i.prism.service_ms.p99 - i.direct.service_ms.p99,
        i.prism.service_ms.p50 - i.direct.service_ms.p50,
    );
    let _ = writeln!(
        out,
        "| Async submit at {:.0} req/s | p99 {:.3} ms (p50 {:.3} ms) | p99 ≤ {SUBMIT_P99_TARGET_MS} ms | {} |",
        i.submit.target_rate,
        i.submit.latency_ms.p99,
        i.submit.latency_ms.p50,
        at_most(
            i.submit.latency_ms.p99,
            SUBMIT_P99_TARGET_MS,
            submit_failures
        ),
    );
    let _ = writeln!(
        out,
        "| Async end to end, {} jobs | {:.0} jobs/s ({} completed in {:.2} s) | ≥ {E2E_TARGET_JOBS_PER_S:.0} jobs/s | {} |",
        e.jobs,
        e.jobs_per_s,
        e.completed,
        e.e2e_s,
        at_least(e.jobs_per_s, E2E_TARGET_JOBS_PER_S, e2e_failures),
    );
    let _ = writeln!(
        out,
        "| Async submit only, {} concurrent clients | {:.0} jobs/s (p50 {:.3} ms, p99 {:.3} ms) | — | — |",
        e.concurrency, e.submit_rate, e.submit_latency_ms.p50, e.submit_latency_ms.p99,
    );
    if let Some(kib) = i.peak_rss_kib {
        let _ = writeln!(
            out,
            "| Prism peak RSS (VmHWM) over the whole run | {:.1} MiB | — | — |",
            kib as f64 / 1024.0
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{ErrorCounts, LatencySummary};

    fn open(p50: f64, p99: f64, errors: u64) -> open_loop::Summary {
        open_loop::Summary {
            mode: "sync".into(),
            url: "http://x/v1/chat/completions".into(),
            model: "m".into(),
            target_rate: 1000.0,
            duration_s: 10.0,
            warmup_s: 2.0,
            scheduled: 10_000,
            ok: 10_000 - errors,
            errors,
            error_kinds: ErrorCounts::default(),
            dropped: 0,
            achieved_rate: 1000.0,
            latency_ms: LatencySummary {
                count: 10_000,
                p50,
                p99,
                ..LatencySummary::default()
            },
            service_ms: LatencySummary::default(),
            send_lag_ms: LatencySummary::default(),
        }
    }

    fn e2e(jobs_per_s: f64) -> e2e::Summary {
        e2e::Summary {
            url: "http://x".into(),
            model: "m".into(),
            jobs: 100,
            concurrency: 8,
            poll: "list".into(),
            submitted: 100,
            submit_errors: 0,
            submit_error_kinds: ErrorCounts::default(),
            submit_s: 0.01,
            submit_rate: 10_000.0,
            submit_latency_ms: LatencySummary::default(),
            completed: 100,
            failed: 0,
            cancelled: 0,
            unfinished: 0,
            e2e_s: 100.0 / jobs_per_s,
            jobs_per_s,
            drain_s: 0.0,
            poll_requests: 3,
        }
    }

    #[test]
    fn verdicts_compare_against_the_targets() {
        let table = markdown(&Inputs {
            direct: open(0.2, 0.5, 0),
            prism: open(0.5, 1.0, 0),
            submit: open(0.9, 2.5, 0),
            e2e: e2e(1500.0),
            peak_rss_kib: Some(2048),
        });
        assert!(
            table.contains("p99 +0.500 ms (p50 +0.300 ms) | p99 ≤ 1 ms | PASS"),
            "{table}"
        );
        assert!(table.contains("MISS by 0.500 ms (1.2x)"), "{table}");
        assert!(table.contains("1500 jobs/s"), "{table}");
        assert!(table.contains("MISS by 500 (75% of target)"), "{table}");
        assert!(table.contains("2.0 MiB"), "{table}");
    }

    #[test]
    fn errors_fail_a_latency_target_whatever_the_numbers() {
        let table = markdown(&Inputs {
            direct: open(0.2, 0.5, 0),
            prism: open(0.2, 0.5, 3),
            submit: open(0.2, 0.5, 0),
            e2e: e2e(5000.0),
            peak_rss_kib: None,
        });
        assert!(table.contains("FAIL (3 errors)"), "{table}");
        assert!(!table.contains("RSS"), "{table}");
    }
}

//! The verdict on a fault-matrix or soak run (bench's `prism-chaos`, server/tests/fault_matrix.rs):
//! every accepted job and batch line ended exactly once with an outcome the mock's faults can
//! explain, and the upstream calls stayed within "attempts allowed + kills × calls in flight".

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

/// What an accepted submit gave back, and every id a replay of the same `Idempotency-Key` was
/// answered with (one id is exactly once; two would be a duplicate job).
#[derive(Debug, Clone)]
pub struct Submitted {
    pub prompt: String,
    pub ids: Vec<String>,
}

/// Error codes the chaos mock can cause: a 429 still rate limited at the last attempt, a 500,
/// a hang past the attempt timeout, a truncated body.
pub const CHAOS_CODES: [&str; 4] = [
    "rate_limit_exceeded",
    "server_error",
    "upstream_timeout",
    "invalid_upstream_response",
];

#[derive(Debug, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub pass: bool,
    pub detail: String,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Verdict {
    pub checks: Vec<Check>,
    /// Outcome counts, e.g. `async completed`, `batch failed server_error`.
    pub outcomes: BTreeMap<String, u64>,
}

impl Verdict {
    pub fn check(&mut self, name: impl Into<String>, pass: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            pass,
            detail: detail.into(),
        });
    }

    fn count(&mut self, what: String) {
        *self.outcomes.entry(what).or_default() += 1;
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.pass)
    }
}

/// The code a failed job or an error-file line carries: `code`, else `type`.
fn error_code(error: &Value) -> String {
    error["code"]
        .as_str()
        .or_else(|| error["type"].as_str())
        .unwrap_or("?")
        .to_owned()
}

fn completion_text(completion: &Value) -> Option<&str> {
    completion["choices"][0]["message"]["content"].as_str()
}

/// Async or scheduled jobs: each accepted once, each terminal, completed ones holding their own
/// prompt's echo, failed ones with a code in `allowed` (nothing may fail when it is empty).
pub fn check_jobs(
    verdict: &mut Verdict,
    kind: &str,
    submitted: &[anyhow::Result<Submitted>],
    finals: &BTreeMap<String, Value>,
    allowed: &[&str],
) {
    let accepted: Vec<&Submitted> = submitted.iter().filter_map(|s| s.as_ref().ok()).collect();
    let refused: Vec<String> = submitted
        .iter()
        .filter_map(|s| s.as_ref().err().map(|e| format!("{e:#}")))
        .collect();
    verdict.check(
        format!("{kind}: every submit accepted"),
        refused.is_empty(),
        format!(
            "{} of {} accepted{}",
            accepted.len(),
            submitted.len(),
            refused
                .first()
                .map(|e| format!("; first refusal: {e}"))
                .unwrap_or_default()
        ),
    );
    let replays_differ = accepted.iter().filter(|s| s.ids.len() > 1).count();
    verdict.check(
        format!("{kind}: one job per idempotency key"),
        replays_differ == 0,
        format!("{replays_differ} keys answered with two job ids"),
    );
    let (mut open, mut wrong_result, mut wrong_code) = (0, 0, BTreeMap::<String, u64>::new());
    for job in &accepted {
        let Some(last) = finals.get(&job.ids[0]) else {
            open += 1;
            continue;
        };
        let status = last["status"].as_str().unwrap_or("?");
        match status {
            "completed" => {
                verdict.count(format!("{kind} completed"));
                if completion_text(&last["result"]) != Some(job.prompt.as_str()) {
                    wrong_result += 1;
                }
            }
            "failed" => {
                let code = error_code(&last["error"]);
                verdict.count(format!("{kind} failed {code}"));
                if !allowed.contains(&code.as_str()) {
                    *wrong_code.entry(code).or_default() += 1;
                }
            }
            "pending" | "running" => open += 1,
            other => verdict.count(format!("{kind} {other}")),
        }
    }
    verdict.check(
        format!("{kind}: every job ended"),
        open == 0,
        format!("{open} still pending or running"),
    );
    verdict.check(
        format!("{kind}: completed jobs hold their own answer"),
        wrong_result == 0,
        format!("{wrong_result} with another prompt's answer or none"),
    );
    verdict.check(
        format!("{kind}: failures only with codes the faults explain"),
        wrong_code.is_empty(),
        format!("unexplained: {wrong_code:?} (allowed: {allowed:?})"),
    );
}

/// The batch: terminal `completed`, every line exactly once across output and error files,
/// outputs holding their own prompt's echo, errors with codes in `allowed`, counts matching.
pub fn check_batch(
    verdict: &mut Verdict,
    batch: &Value,
    output: &[Value],
    errors: &[Value],
    prompts: &HashMap<String, String>,
    allowed: &[&str],
) {
    verdict.check(
        "batch: completed",
        batch["status"] == "completed",
        format!("status {}", batch["status"]),
    );
    let mut seen = HashSet::new();
    let mut twice = 0;
    let mut wrong_result = 0;
    let mut wrong_code = BTreeMap::<String, u64>::new();
    for line in output {
        let id = line["custom_id"].as_str().unwrap_or("?").to_owned();
        if !seen.insert(id.clone()) {
            twice += 1;
        }
        verdict.count("batch completed".into());
        let body = &line["response"]["body"];
        if completion_text(body) != prompts.get(&id).map(String::as_str) {
            wrong_result += 1;
        }
    }
    for line in errors {
        let id = line["custom_id"].as_str().unwrap_or("?").to_owned();
        if !seen.insert(id) {
            twice += 1;
        }
        let error = if line["response"]["body"]["error"].is_object() {
            &line["response"]["body"]["error"]
        } else {
            &line["error"]
        };
        let code = error_code(error);
        verdict.count(format!("batch failed {code}"));
        if !allowed.contains(&code.as_str()) {
            *wrong_code.entry(code).or_default() += 1;
        }
    }
    let missing = prompts.keys().filter(|id| !seen.contains(*id)).count();
    verdict.check(
        "batch: every line exactly once in output or error file",
        twice == 0 && missing == 0,
        format!("{} lines: {twice} twice, {missing} missing", prompts.len()),
    );
    verdict.check(
        "batch: output lines hold their own answer",
        wrong_result == 0,
        format!("{wrong_result} with another prompt's answer"),
    );
    verdict.check(
        "batch: error lines only with codes the faults explain",
        wrong_code.is_empty(),
        format!("unexplained: {wrong_code:?} (allowed: {allowed:?})"),
    );
    let counts = &batch["request_counts"];
    let matches = counts["completed"].as_u64() == Some(output.len() as u64)
        && counts["failed"].as_u64() == Some(errors.len() as u64)
        && counts["total"].as_u64() == Some(prompts.len() as u64);
    verdict.check(
        "batch: request_counts match the files",
        matches,
        format!(
            "{counts} vs {} output, {} error",
            output.len(),
            errors.len()
        ),
    );
}

/// What the mock counted for one model: calls received, answered `ok`, and rate limited.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Calls {
    pub requests: u64,
    pub ok: u64,
    pub rate_limited: u64,
}

impl Calls {
    /// From `GET /_stats`: a chaos model's draws, or for any other model every call not
    /// aborted is an answer.
    pub fn of(stats: &Value, model: &str) -> Self {
        let requests = stats["requests"][model].as_u64().unwrap_or(0);
        let drawn = &stats["drawn"][model];
        if drawn.is_object() {
            Self {
                requests,
                ok: drawn["ok"].as_u64().unwrap_or(0),
                rate_limited: drawn["429"].as_u64().unwrap_or(0),
            }
        } else {
            let aborted = stats["aborted"][model].as_u64().unwrap_or(0);
            Self {
                requests,
                ok: requests.saturating_sub(aborted),
                rate_limited: 0,
            }
        }
    }
}

/// How many upstream attempts for `model` prism gave up at its attempt timeout, from its log
/// (`upstream attempt failed ... upstream timed out`, in the `upstream_complete` span that names
/// the model). The mock may well have answered such a call: Prism did not wait for the answer
/// and tried again, so it is a paid repeat the attempt timeout caused, not one a kill did.
pub fn timed_out_attempts(prism_log: &str, model: &str) -> u64 {
    let span = format!("model=\"{model}\"");
    prism_log
        .lines()
        .filter(|line| {
            line.contains("upstream attempt failed")
                && line.contains("upstream timed out")
                && line.contains(&span)
        })
        .count() as u64
}

/// The two call bounds of one kind of work: at most `attempts` calls per item that count toward
/// its attempts, and one answered call per item, each plus `kills × in_flight` calls a kill may
/// make the next process repeat (and, for answered calls, the attempts prism timed out).
pub struct Bound<'a> {
    pub kind: &'a str,
    pub items: u64,
    pub attempts: u64,
    /// Whether a 429 counts toward `attempts` (jobs) or is retried freely (batch lines).
    pub rate_limits_count: bool,
    pub kills: u64,
    pub in_flight: u64,
    /// Attempts prism gave up at its attempt timeout ([`timed_out_attempts`]); each may have
    /// been answered, and so paid, all the same.
    pub timed_out: u64,
}

pub fn check_calls(verdict: &mut Verdict, calls: Calls, bound: &Bound<'_>) {
    let repeat_allowance = bound.kills * bound.in_flight;
    let counted = if bound.rate_limits_count {
        calls.requests
    } else {
        calls.requests - calls.rate_limited.min(calls.requests)
    };
    let attempt_bound = bound.items * bound.attempts + repeat_allowance;
    verdict.check(
        format!("{}: upstream calls within attempts + kills × in flight", bound.kind),
        counted <= attempt_bound,
        format!(
            "{counted} calls{} ≤ {} items × {} attempts + {} kills × {} in flight = {attempt_bound}",
            if bound.rate_limits_count { "" } else { " (429s excluded)" },
            bound.items,
            bound.attempts,
            bound.kills,
            bound.in_flight
        ),
    );
    let paid_bound = bound.items + repeat_allowance + bound.timed_out;
    verdict.check(
        format!(
            "{}: answered (paid) calls within items + kills × in flight + attempts timed out",
            bound.kind
        ),
        calls.ok <= paid_bound,
        format!(
            "{} answered calls for {} items: {} repeats (allowed {repeat_allowance} for kills + {} attempts prism timed out)",
            calls.ok,
            bound.items,
            calls.ok.saturating_sub(bound.items),
            bound.timed_out
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_timed_out_attempts_of_the_model_are_counted() {
        let log = "\
2026-11-30T10:00:42Z  INFO handle_delivery_until{receive_count=1 job_id=\"job_1\" tenant=\"t\"}:upstream_complete{provider=mock model=\"m-async\"}: prism_upstream::client: upstream attempt failed elapsed_ms=2006 error=upstream timed out
2026-11-30T10:00:43Z  INFO handle_delivery_until{receive_count=1}:upstream_complete{provider=mock model=\"m-batch\"}: prism_upstream::client: upstream attempt failed elapsed_ms=2100 error=upstream timed out
2026-11-30T10:00:44Z  INFO handle_delivery_until{receive_count=1 job_id=\"job_2\" tenant=\"t\"}:upstream_complete{provider=mock model=\"m-async\"}: prism_upstream::client: upstream attempt failed elapsed_ms=20 error=upstream returned 500
2026-11-30T10:00:45Z DEBUG handle_delivery_until{receive_count=1 job_id=\"job_3\" tenant=\"t\"}:upstream_complete{provider=mock model=\"m-async\"}: prism_upstream::client: upstream completed elapsed_ms=201
";
        assert_eq!(timed_out_attempts(log, "m-async"), 1);
        assert_eq!(timed_out_attempts(log, "m-batch"), 1);
        assert_eq!(timed_out_attempts(log, "m-sched"), 0);
    }

    #[test]
    fn timed_out_attempts_widen_only_the_paid_bound() {
        let bound = |timed_out| Bound {
            kind: "jobs",
            items: 100,
            attempts: 1,
            rate_limits_count: true,
            kills: 1,
            in_flight: 10,
            timed_out,
        };
        let calls = Calls {
            requests: 115,
            ok: 115,
            rate_limited: 0,
        };
        let mut strict = Verdict::default();
        check_calls(&mut strict, calls, &bound(0));
        assert!(!strict.checks[1].pass, "15 repeats > 10 for one kill");
        let mut explained = Verdict::default();
        check_calls(&mut explained, calls, &bound(5));
        assert!(explained.checks[1].pass);
        assert!(
            !explained.checks[0].pass,
            "115 calls > 100 × 1 + 10 either way"
        );
    }
}

//! The fault matrix, short: 60 async jobs, 20 scheduled jobs and a 200-line batch run together
//! against `mock-chaos` (per call: 20% 429 with `retry-after`, 10% 500, 5% hangs past the attempt
//! timeout, 2% truncated bodies) while `prism serve` is SIGKILLed twice at random moments and
//! restarted. Every job and line ends exactly once with an outcome the faults explain, and the
//! upstream calls stay within "attempts + kills × calls in flight". Both backends
//! (`PRISM_TEST_BACKEND=aws`); the long version is bench/faults.sh.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prism_testkit::chaos::{
    Bound, CHAOS_CODES, Calls, Submitted, Verdict, check_batch, check_calls, check_jobs,
};
use serde_json::{Value, json};
use support::{Env, Setup, chat_batch_input, chat_body, rfc3339_in, start};

const JOBS: usize = 60;
const SCHEDULED: usize = 20;
const LINES: usize = 200;
const KILLS: u64 = 2;
const MAX_ATTEMPTS: u64 = 5;
const WORKER_CONCURRENCY: u64 = 16;
const MODEL_CONCURRENCY: u64 = 50;

/// A pause of 1 to 4 s that differs from run to run.
fn random_pause() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(1_000 + u64::from(nanos % 3_000))
}

async fn submit(env: &Env, path: &str, body: &Value, key: &str, prompt: String) -> Submitted {
    let mut ids = Vec::new();
    // Twice under the same key: the replay must answer the same job.
    for _ in 0..2 {
        let mut request = env
            .http
            .post(env.url(path))
            .bearer_auth(&env.alpha)
            .header("idempotency-key", key)
            .json(body);
        if path == "/v1/chat/completions" {
            request = request.header("x-prism-async", "true");
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        let job: Value = response.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_owned();
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    Submitted { prompt, ids }
}

async fn wait_for_all(env: &Env, ids: &[String], within: Duration) -> BTreeMap<String, Value> {
    let deadline = Instant::now() + within;
    let mut finals = BTreeMap::new();
    loop {
        for id in ids {
            let job = env.job(&env.alpha, id).await;
            finals.insert(id.clone(), job);
        }
        let open = finals
            .values()
            .filter(|job| matches!(job["status"].as_str(), Some("pending" | "running")))
            .count();
        if open == 0 || Instant::now() > deadline {
            return finals;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn jobs_and_a_batch_under_random_faults_and_two_kills_end_exactly_once() {
    let mut env = start(Setup {
        workers: "upstream_timeout = \"1s\"\nmax_attempts = 5\nconcurrency = 16",
        batches: "model_concurrency = 50\nline_concurrency = 50\nlines_per_chunk = 100",
        ..Setup::default()
    })
    .await;
    let seed = std::process::id();
    let model = |kind: &str| format!("mock-chaos-20-{seed}-{kind}");

    let input = chat_batch_input("line", &model("batch"), LINES);
    let prompts: HashMap<String, String> = (0..LINES)
        .map(|i| (format!("line-{i}"), i.to_string()))
        .collect();
    let batch_id = env.start_batch(&input).await;
    let mut asyncs = Vec::new();
    for i in 0..JOBS {
        let prompt = format!("async {i}");
        let body = chat_body(&model("async"), &prompt);
        let key = format!("fm-async-{seed}-{i}");
        asyncs.push(Ok(submit(
            &env,
            "/v1/chat/completions",
            &body,
            &key,
            prompt,
        )
        .await));
    }
    let mut scheduled = Vec::new();
    for i in 0..SCHEDULED {
        let prompt = format!("scheduled {i}");
        let due = rfc3339_in(1_000 + 300 * i as i64);
        let body = json!({"scheduled_at": due, "request": chat_body(&model("sched"), &prompt)});
        let key = format!("fm-sched-{seed}-{i}");
        scheduled.push(Ok(submit(&env, "/v1/scheduled", &body, &key, prompt).await));
    }

    for _ in 0..KILLS {
        tokio::time::sleep(random_pause()).await;
        env.kill_server().await;
        env.start_server().await;
    }

    let ids: Vec<String> = asyncs
        .iter()
        .chain(&scheduled)
        .map(|s: &anyhow::Result<Submitted>| s.as_ref().unwrap().ids[0].clone())
        .collect();
    let finals = wait_for_all(&env, &ids, Duration::from_secs(90)).await;
    let batch = env
        .wait_for_batch(
            &batch_id,
            &["completed", "failed", "expired", "cancelled"],
            Duration::from_secs(90),
        )
        .await;
    let output = env.file_lines(&batch["output_file_id"]).await;
    let errors = env.file_lines(&batch["error_file_id"]).await;

    let mut verdict = Verdict::default();
    check_jobs(&mut verdict, "async", &asyncs, &finals, &CHAOS_CODES);
    check_jobs(&mut verdict, "scheduled", &scheduled, &finals, &CHAOS_CODES);
    check_batch(
        &mut verdict,
        &batch,
        &output,
        &errors,
        &prompts,
        &CHAOS_CODES,
    );
    let stats = serde_json::to_value(env.mock.stats()).unwrap();
    let [a, s, b] = ["async", "sched", "batch"].map(|kind| Calls::of(&stats, &model(kind)));
    let jobs = Calls {
        requests: a.requests + s.requests,
        ok: a.ok + s.ok,
        rate_limited: a.rate_limited + s.rate_limited,
    };
    let bound = |kind, items, rate_limits_count, in_flight| Bound {
        kind,
        items,
        attempts: MAX_ATTEMPTS,
        rate_limits_count,
        kills: KILLS,
        in_flight,
        // Strict here: the mock's calls take 20 ms against a 1 s attempt timeout.
        timed_out: 0,
    };
    let jobs_bound = bound("jobs", (JOBS + SCHEDULED) as u64, true, WORKER_CONCURRENCY);
    check_calls(&mut verdict, jobs, &jobs_bound);
    let batch_bound = bound("batch", LINES as u64, false, MODEL_CONCURRENCY);
    check_calls(&mut verdict, b, &batch_bound);

    let report: Vec<String> = verdict
        .checks
        .iter()
        .map(|c| {
            format!(
                "{} {}: {}",
                if c.pass { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            )
        })
        .collect();
    eprintln!("{}\noutcomes: {:?}", report.join("\n"), verdict.outcomes);
    assert!(verdict.passed(), "{}", report.join("\n"));
}

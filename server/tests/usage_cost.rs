//! Usage and cost at the system boundary: finished jobs and batches carry `prism.cost_usd` from
//! the `[[prices]]` table (absent for an unpriced model), each batch line at its own tier's price
//! (native lines at the batch price, flex lines at the flex price), a batch's usage is its lines'
//! usage exactly once even when its process is killed mid-run, and `GET /v1/usage` adds it all
//! up per kind, model and tier from the usage counters: once per finished job or batch, past the
//! work's retention, in daily buckets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::sync::Arc;
use std::time::Duration;

use prism_core::ids::IdGenerator;
use prism_core::jobs::{Finish, NewJob};
use prism_core::ports::{ClaimOutcome, JobStore, Lease};
use prism_core::usage::counters::Day;
use prism_core::{ApiEndpoint, JobKind, SystemClock, TenantId, Timestamp};
use serde_json::{Value, json};
use support::{Backend, Env, Setup, chat_batch_input, chat_body, eventually, start};

/// $1 per million input tokens, $2 per million output tokens: a cost in microdollars is
/// `input + 2 × output`. The batch and flex tiers' prices differ, so a line billed at the wrong
/// tier shows.
const PRICES: &str = r#"
[[prices]]
model = "*priced*"
input = 1
output = "2"
batch = { input = 0.5, output = 1 }
flex = { input = 0.25, output = 0.5 }
"#;

/// Microdollars as the USD decimal string the API shows.
fn usd(micros: u64) -> String {
    let text = format!("{}.{:06}", micros / 1_000_000, micros % 1_000_000);
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// Input and output tokens of a completion body.
fn tokens(body: &Value) -> (u64, u64) {
    (
        body["usage"]["prompt_tokens"].as_u64().unwrap(),
        body["usage"]["completion_tokens"].as_u64().unwrap(),
    )
}

/// The input and output tokens of a finished batch's output lines, summed.
fn summed(output: &[Value]) -> (u64, u64) {
    output.iter().fold((0, 0), |(i, o), line| {
        let (a, b) = tokens(&line["response"]["body"]);
        (i + a, o + b)
    })
}

#[tokio::test]
async fn finished_jobs_and_batches_show_their_cost_and_the_usage_endpoint_adds_them_up() {
    let env = start(Setup {
        prices: PRICES,
        batches: "lines_per_chunk = 7",
        ..Setup::default()
    })
    .await;
    let key = env.alpha.clone();

    let priced = env.submit(&key, "mock-priced", "one two three").await;
    let job = env
        .wait_for(&key, &priced, &["completed"], Duration::from_secs(30))
        .await;
    let (input, output) = tokens(&job["result"]);
    assert_eq!(job["prism"]["cost_usd"], usd(input + 2 * output), "{job}");

    let unpriced = env.submit(&key, "mock-free", "four five").await;
    let job = env
        .wait_for(&key, &unpriced, &["completed"], Duration::from_secs(30))
        .await;
    assert!(job.get("prism").is_none(), "no price, no cost: {job}");

    let lines = 30;
    let id = env
        .start_batch(&chat_batch_input("c", "mock-priced", lines))
        .await;
    let pending: Value = env
        .get(&key, &format!("/v1/batches/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert!(pending.get("prism").is_none(), "not finished: {pending}");
    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(60))
        .await;
    let (out, errors) = env.finished_batch_lines(&done, lines).await;
    assert!(errors.is_empty(), "{errors:?}");
    let (batch_in, batch_out) = summed(&out);
    assert_eq!(done["usage"]["input_tokens"], batch_in);
    assert_eq!(done["usage"]["output_tokens"], batch_out);
    assert_eq!(done["usage"]["total_tokens"], batch_in + batch_out);
    // Gateway lines bill at the standard tier, not the batch price.
    assert_eq!(
        done["prism"]["cost_usd"],
        usd(batch_in + 2 * batch_out),
        "{done}"
    );

    let totals: Value = env
        .get(&key, "/v1/usage?start_time=0")
        .await
        .json()
        .await
        .unwrap();
    let line = |kind: &str, model: &str| {
        totals["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["kind"] == kind && l["model"] == model)
            .unwrap_or_else(|| panic!("no {kind} {model} line in {totals}"))
            .clone()
    };
    let batch_line = line("batch", "mock-priced");
    assert_eq!(batch_line["requests"], lines);
    assert_eq!(batch_line["tier"], "standard");
    assert_eq!(batch_line["input_tokens"], batch_in);
    assert_eq!(batch_line["cost_usd"], done["prism"]["cost_usd"]);
    assert_eq!(line("async", "mock-priced")["requests"], 1);
    assert_eq!(line("async", "mock-free")["cost_usd"], Value::Null);
    assert_eq!(totals["total"]["requests"], lines + 2);
    assert_eq!(
        totals["total"]["cost_usd"],
        Value::Null,
        "a model without a price leaves the total without one"
    );

    // All of it finished today: one daily bucket, holding all of it.
    let buckets = totals["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 1, "{totals}");
    assert_eq!(buckets[0]["object"], "bucket");
    assert_eq!(buckets[0]["total"], totals["total"]);
    assert_eq!(buckets[0]["data"], totals["data"]);

    // A range that ended before any of it counts nothing; another tenant sees nothing.
    let early: Value = env
        .get(&key, "/v1/usage?start_time=0&end_time=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(early["data"], json!([]));
    assert_eq!(early["buckets"], json!([]));
    assert_eq!(early["total"]["cost_usd"], "0");
    let other: Value = env
        .get(&env.beta, "/v1/usage?start_time=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(other["total"]["requests"], 0);
    let missing = env.get(&key, "/v1/usage").await;
    assert_eq!(missing.status(), 400);
}

const KILLED_LINES: usize = 600;
const KILLS: usize = 3;

#[tokio::test]
async fn a_batch_killed_mid_run_sums_each_lines_usage_exactly_once() {
    // 60 calls of 1 s at a time, and finished lines wait up to 2 s (or 100 of them) for their
    // commit: a kill loses answered, paid lines, which the next claim runs and pays again.
    let mut env = start(Setup {
        prices: PRICES,
        batches: "lines_per_chunk = 300\nline_concurrency = 300\nmodel_concurrency = 60\n\
                  checkpoint_lines = 100\ncheckpoint_every = \"2s\"\nlease = \"3s\"",
        ..Setup::default()
    })
    .await;
    if env.backend.is_lambda() {
        return; // lambda_crashes kills Lambda sandboxes instead
    }
    let model = "mock-slow-1000-priced";
    let id = env
        .start_batch(&chat_batch_input("u", model, KILLED_LINES))
        .await;
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let running = env
            .wait_for_batch(&id, &["in_progress", "completed"], Duration::from_secs(5))
            .await;
        assert_eq!(running["status"], "in_progress", "killed after the end");
        env.kill_server().await;
        env.start_server().await;
    }
    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(240))
        .await;
    let (output, errors) = env.finished_batch_lines(&done, KILLED_LINES).await;
    assert!(errors.is_empty(), "{errors:?}");
    let (input, out) = summed(&output);
    let answered = env.mock.finished(model) as usize;
    eprintln!("{KILLS} kills: {answered} answered upstream calls for {KILLED_LINES} lines");
    if !env.backend.is_aws() {
        // On the emulator the same kills land on other timings (SQS redelivery, slower
        // commits) and need not lose an answered line; the sums must hold all the same.
        assert!(answered > KILLED_LINES, "no kill lost an answered line");
    }
    // A line answered twice (its first answer lost to a kill) is one line of the output, and
    // the batch's usage is the output's, never the calls'.
    assert_eq!(done["usage"]["input_tokens"], input, "{done}");
    assert_eq!(done["usage"]["output_tokens"], out, "{done}");
    assert_eq!(done["request_counts"]["completed"], KILLED_LINES);
    assert_eq!(done["prism"]["cost_usd"], usd(input + 2 * out));
    // The usage counters took the batch once, whatever was redelivered (chunks, finalize).
    let totals: Value = env
        .get(&env.alpha, "/v1/usage?start_time=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(totals["total"]["requests"], KILLED_LINES, "{totals}");
    assert_eq!(totals["total"]["input_tokens"], input, "{totals}");
    assert_eq!(totals["total"]["output_tokens"], out, "{totals}");
    assert_eq!(totals["total"]["cost_usd"], done["prism"]["cost_usd"]);
}

/// Starts Prism with three providers on the one mock: `gw-*` models at the gateway, `mock-batch*`
/// models through the mock's Batch API (`native`), and `flex-*` models at the flex tier.
async fn start_with_every_mode() -> Env {
    let mut env = start(Setup {
        prices: PRICES,
        batches: "lines_per_chunk = 30",
        models: r#"["gw-*"]"#,
        ..Setup::default()
    })
    .await;
    env.kill_server().await;
    let base = env.mock.base_url();
    let mut config = std::fs::read_to_string(&env.config).unwrap();
    config.push_str(&format!(
        "\n[[providers]]\nname = \"native\"\nbase_url = \"{base}\"\n\
         models = [\"mock-batch*\"]\nbatch = \"native\"\n\n\
         [[providers]]\nname = \"flex\"\nbase_url = \"{base}\"\n\
         models = [\"flex-*\"]\nbatch = \"flex\"\n"
    ));
    std::fs::write(&env.config, config).unwrap();
    env.start_server().await;
    env
}

#[tokio::test]
async fn each_batch_line_bills_at_the_tier_it_ran_at() {
    let env = start_with_every_mode().await;
    let models = ["gw-priced", "mock-batch-priced", "flex-priced"];
    let input: String = (0..30)
        .map(|i| {
            let (custom_id, model) = (format!("tier-{i}"), models[i % 3]);
            let line = json!({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions",
                              "body": chat_body(model, &custom_id)});
            format!("{line}\n")
        })
        .collect();
    let id = env.start_batch(&input).await;
    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(60))
        .await;
    let (output, errors) = env.finished_batch_lines(&done, 30).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        env.mock.batch_api_calls("batches.create"),
        1,
        "native lines ran natively"
    );
    // Per model: its tokens, priced at its tier: standard 1/2, batch 0.5/1, flex 0.25/0.5 $/M.
    let mut expected_picodollars = 0u64;
    for (model, (input_price, output_price)) in models.iter().zip([(4, 8), (2, 4), (1, 2)]) {
        let (i, o) = summed(
            &output
                .iter()
                .filter(|l| l["response"]["body"]["model"] == *model)
                .cloned()
                .collect::<Vec<_>>(),
        );
        // The mock answers with the model asked for, which names the line's tier here.
        assert!(i > 0, "{model} has lines");
        // Quarter-microdollars per token, times 250,000 picodollars each.
        expected_picodollars += (i * input_price + o * output_price) * 250_000;
    }
    let cost = done["prism"]["cost_usd"].as_str().unwrap();
    let (whole, frac) = cost.split_once('.').unwrap_or((cost, ""));
    let picodollars = whole.parse::<u64>().unwrap() * 1_000_000_000_000
        + format!("{frac:0<12}").parse::<u64>().unwrap();
    assert_eq!(picodollars, expected_picodollars, "{done}");

    let totals: Value = env
        .get(&env.alpha, "/v1/usage?start_time=0")
        .await
        .json()
        .await
        .unwrap();
    let mut tiers: Vec<(String, String, u64)> = totals["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["model"].as_str().unwrap().to_owned(),
                l["tier"].as_str().unwrap().to_owned(),
                l["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    tiers.sort();
    assert_eq!(
        tiers,
        [
            ("flex-priced".to_owned(), "flex".to_owned(), 10),
            ("gw-priced".to_owned(), "standard".to_owned(), 10),
            ("mock-batch-priced".to_owned(), "batch".to_owned(), 10),
        ]
    );
    assert_eq!(totals["total"]["cost_usd"], done["prism"]["cost_usd"]);
}

/// The job store `prism serve` runs on, opened beside it.
async fn job_store(env: &Env) -> Arc<dyn JobStore> {
    let settings = match &env.backend {
        Backend::Embedded => {
            let path = env.data_dir().join(prism_embedded::DATABASE_FILE);
            let db = prism_embedded::Database::open(&path).unwrap();
            let queue = prism_embedded::SqliteWorkQueue::new(db.clone(), Arc::new(SystemClock));
            return Arc::new(prism_embedded::SqliteJobStore::new(db, &queue));
        }
        Backend::Aws(settings) => (**settings).clone(),
        Backend::Lambda(stack) => stack.settings.clone(),
    };
    Arc::new(
        prism_aws::AwsBackend::connect(settings, Duration::from_secs(1))
            .await
            .jobs,
    )
}

/// Finishes a scheduled job of tenant alpha as of `at`, through the store: usage of another day,
/// which no test can wait for. It falls due an hour from now, so no worker of `prism serve`
/// takes it meanwhile; the claim is made as of then.
async fn finish_a_job_as_of(env: &Env, at: Timestamp, body: &str) {
    let jobs = job_store(env).await;
    let now = prism_core::Clock::now(&SystemClock);
    let due = now.plus(Duration::from_secs(3600));
    let job = NewJob {
        id: IdGenerator::new().scheduled_job_id(now),
        tenant: TenantId::parse("alpha").unwrap(),
        kind: JobKind::Scheduled,
        endpoint: ApiEndpoint::ChatCompletions,
        model: "mock-priced".into(),
        request: Default::default(),
        created_at: now,
        scheduled_at: Some(due),
        scheduled_job_id: None,
        metadata: None,
    };
    jobs.create(&job, None).await.unwrap();
    let lease = Lease {
        token: "yesterday".into(),
        expires_at: due.plus(Duration::from_secs(3600)),
    };
    let ClaimOutcome::Claimed(claimed) = jobs.claim(&job.job_ref(), &lease, due).await.unwrap()
    else {
        panic!("the job was not claimable");
    };
    let outcome = Finish::completed(&claimed, body.to_owned(), at);
    assert!(
        jobs.finish(&job.job_ref(), "yesterday", &outcome, at, due)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn usage_outlives_the_work_and_a_range_of_two_days_has_a_bucket_for_each() {
    let env = start(Setup {
        prices: PRICES,
        jobs: "retention = \"2s\"",
        ..Setup::default()
    })
    .await;
    let key = env.alpha.clone();
    let id = env.submit(&key, "mock-priced", "one two three").await;
    let job = env
        .wait_for(&key, &id, &["completed"], Duration::from_secs(30))
        .await;
    let (input, output) = tokens(&job["result"]);
    // Past its retention the job is gone (and purged); what it cost is not.
    eventually(Duration::from_secs(30), "job expired", || async {
        env.get(&key, &format!("/v1/async/{id}")).await.status() == 404
    })
    .await;
    let now = prism_core::Clock::now(&SystemClock);
    let today = Day::of(now);
    let yesterday = Day(today.0 - 1);
    let body = r#"{"model":"mock-priced","usage":{"prompt_tokens":10,"completion_tokens":20,"total_tokens":30}}"#;
    finish_a_job_as_of(&env, yesterday.start().plus(Duration::from_secs(60)), body).await;

    let since_yesterday = format!("/v1/usage?start_time={}", yesterday.start().unix_seconds());
    let totals: Value = env.get(&key, &since_yesterday).await.json().await.unwrap();
    let buckets = totals["buckets"].as_array().unwrap();
    let days: Vec<(i64, &str, u64)> = buckets
        .iter()
        .map(|b| {
            let line = &b["data"][0];
            (
                b["start_time"].as_i64().unwrap(),
                line["kind"].as_str().unwrap(),
                line["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        days,
        [
            (yesterday.start().unix_seconds(), "scheduled", 1),
            (today.start().unix_seconds(), "async", 1)
        ],
        "{totals}"
    );
    assert_eq!(buckets[0]["total"]["cost_usd"], usd(10 + 2 * 20));
    assert_eq!(buckets[1]["total"]["cost_usd"], usd(input + 2 * output));
    assert_eq!(totals["total"]["requests"], 2);
    assert_eq!(
        totals["total"]["cost_usd"],
        usd(10 + 2 * 20 + input + 2 * output)
    );
    // A range of today alone leaves yesterday out.
    let today_only = format!("/v1/usage?start_time={}", today.start().unix_seconds());
    let totals: Value = env.get(&key, &today_only).await.json().await.unwrap();
    assert_eq!(totals["total"]["requests"], 1, "{totals}");
}

//! Usage and cost at the system boundary: finished jobs and batches carry `prism.cost_usd` from
//! the `[[prices]]` table (absent for an unpriced model), a batch's usage is its lines' usage
//! exactly once even when its process is killed mid-run, and `GET /v1/usage` adds it all up per
//! kind and model.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Setup, chat_batch_input, start};

/// $1 per million input tokens, $2 per million output tokens: a cost in microdollars is
/// `input + 2 × output`. The batch tier's price differs, so a gateway line billed at it shows.
const PRICES: &str = r#"
[[prices]]
model = "*priced*"
input = 1
output = "2"
batch = { input = 0.5, output = 1 }
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

    // A range that ended before any of it counts nothing; another tenant sees nothing.
    let early: Value = env
        .get(&key, "/v1/usage?start_time=0&end_time=1")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(early["data"], serde_json::json!([]));
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
}

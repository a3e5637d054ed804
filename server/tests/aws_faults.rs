//! `prism serve --backend aws` when DynamoDB did a write but its answer never came back (or a
//! trigger never reached SQS): the
//! fault proxy (testkit) between prism and the emulator resets the connection right after the
//! emulator applied the write, and the AWS SDK sends it again. The retried write then meets its
//! own earlier success and must read it as done, not as someone else's. And when a call's
//! answer never comes at all (the proxy holds it back): the SDK's attempt timeout cuts it and
//! tries again, so the work goes on within the timeouts, not after its lease lapses. Needs
//! `PRISM_TEST_BACKEND=aws` (scripts/test.sh runs it with `--ignored`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::{Duration, Instant};

use prism_testkit::fault_proxy::{FaultProxy, FaultRates, spawn_fault_proxy};
use serde_json::{Value, json};
use support::{Env, Setup, chat_batch_input, chat_body, start};

const NO_RANDOM_FAULTS: FaultRates = FaultRates {
    dynamodb_throttle: 0.0,
    sqs_5xx: 0.0,
    s3_slow_down: 0.0,
    reset_before: 0.0,
    reset_after: 0.0,
    hang: 0.0,
};

/// Jobs and batch chunks hold leases of two minutes here (an upstream timeout of 120 s, a batch
/// lease of 10 min): work whose AWS call hung could finish before [`WITHIN_TIMEOUTS`] only
/// because the SDK cut the call, never because a lease lapsed and someone took the work over.
const LONG_LEASES: &str = "upstream_timeout = \"120s\"";
const LONG_BATCH_LEASE: &str = "lease = \"10m\"";
/// Far past the default attempt timeout (5 s) and its retries, far short of those leases.
const WITHIN_TIMEOUTS: Duration = Duration::from_secs(60);

async fn proxied_env(jobs: &str) -> (FaultProxy, Env) {
    proxied_env_with(
        NO_RANDOM_FAULTS,
        Setup {
            jobs,
            ..Setup::default()
        },
    )
    .await
}

/// `prism serve --backend aws` whose AWS calls go through a fault proxy drawing `rates`.
async fn proxied_env_with(rates: FaultRates, setup: Setup<'_>) -> (FaultProxy, Env) {
    let emulator = std::env::var("AWS_ENDPOINT_URL").expect("run with the emulator");
    let proxy = spawn_fault_proxy(
        "127.0.0.1:0".parse().unwrap(),
        emulator.parse().unwrap(),
        rates,
        1,
    )
    .await
    .unwrap();
    let endpoint = format!("http://{}", proxy.addr);
    let env = start(Setup {
        aws_endpoint: Some(&endpoint),
        ..setup
    })
    .await;
    assert!(env.backend.is_aws(), "run with PRISM_TEST_BACKEND=aws");
    (proxy, env)
}

fn injected(proxy: &FaultProxy, service: &str, action: &str) -> u64 {
    proxy
        .counts()
        .0
        .get(service)
        .and_then(|actions| actions.get(action))
        .copied()
        .unwrap_or(0)
}

async fn submit_async(env: &Env, content: &str, key: Option<&str>) -> (u16, Value) {
    let mut request = env
        .http
        .post(env.url("/v1/chat/completions"))
        .bearer_auth(&env.alpha)
        .header("x-prism-async", "true")
        .json(&chat_body("mock-echo", content));
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn wait_until_done(env: &Env, id: &str) -> Value {
    env.wait_for(
        &env.alpha,
        id,
        &["completed", "failed", "cancelled"],
        Duration::from_secs(30),
    )
    .await
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_submit_whose_stored_answer_was_lost_is_accepted_and_runs_once() {
    // The reconciler would rescue an untriggered job only after an hour: a job that runs did so
    // because its submit triggered it.
    let (proxy, env) = proxied_env("stranded_after = \"1h\"").await;

    // The job's conditional PutItem is applied, its answer lost; the SDK's retry is refused by
    // the condition, since the item is there now.
    proxy.reset_after_next("PutItem", 1);
    let (status, job) = submit_async(&env, "stored once", None).await;
    assert_eq!(injected(&proxy, "dynamodb", "reset_after"), 1);
    assert_eq!(status, 202, "{job}");

    let job = wait_until_done(&env, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(env.mock.hits("mock-echo"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn resets_before_a_write_are_tried_again_by_the_sdk_until_its_last_attempt() {
    let (proxy, env) = proxied_env("stranded_after = \"1h\"").await;

    // Every try but the SDK's last never reaches DynamoDB.
    let lost = prism_aws::SDK_MAX_ATTEMPTS - 1;
    proxy.reset_before_next("PutItem", lost);
    let (status, job) = submit_async(&env, "tried again", None).await;
    assert_eq!(
        injected(&proxy, "dynamodb", "reset_before"),
        u64::from(lost)
    );
    assert_eq!(status, 202, "{job}");

    let job = wait_until_done(&env, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(env.mock.hits("mock-echo"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_keyed_submit_whose_stored_answer_was_lost_runs_and_replays_the_same_job() {
    let (proxy, env) = proxied_env("stranded_after = \"1h\"").await;

    // The job and its idempotency record are written in one transaction; its answer is lost,
    // and the SDK sends it again with the same ClientRequestToken.
    proxy.reset_after_next("TransactWriteItems", 1);
    let (status, job) = submit_async(&env, "stored once", Some("lost-answer-1")).await;
    assert_eq!(injected(&proxy, "dynamodb", "reset_after"), 1);
    assert_eq!(status, 202, "{job}");

    let id = job["id"].as_str().unwrap();
    let job = wait_until_done(&env, id).await;
    assert_eq!(job["status"], "completed", "{job}");
    let (_, replay) = submit_async(&env, "stored once", Some("lost-answer-1")).await;
    assert_eq!(replay["id"], job["id"], "{replay}");
    assert_eq!(env.mock.hits("mock-echo"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_job_whose_trigger_was_lost_is_run_by_the_reconciler() {
    let (proxy, env) = proxied_env("stranded_after = \"2s\"").await;

    // Every try the SDK makes of the job's first SendMessage fails: the job is stored, its
    // trigger is lost, and the submit still answers.
    proxy.reset_before_next("SendMessage", prism_aws::SDK_MAX_ATTEMPTS);
    let id = env.submit(&env.alpha, "mock-echo", "trigger lost").await;
    assert_eq!(
        injected(&proxy, "sqs", "reset_before"),
        u64::from(prism_aws::SDK_MAX_ATTEMPTS),
        "the trigger was not lost"
    );

    let job = wait_until_done(&env, &id).await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(env.mock.hits("mock-echo"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_file_and_a_batch_whose_stored_answers_were_lost_are_accepted_once() {
    let (proxy, env) = proxied_env("").await;
    let input = chat_batch_input("line", "mock-echo", 3);

    // The file's record, then the batch's item: each conditional PutItem is applied and its
    // answer lost; the SDK's retry is refused by the condition.
    proxy.reset_after_next("PutItem", 1);
    let file = env.upload_batch_file(&env.alpha, input.as_bytes()).await;
    assert_eq!(injected(&proxy, "dynamodb", "reset_after"), 1);
    proxy.reset_after_next("PutItem", 1);
    let response = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(injected(&proxy, "dynamodb", "reset_after"), 2);
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    let batch: Value = response.json().await.unwrap();

    let batch = env
        .wait_for_batch(
            batch["id"].as_str().unwrap(),
            &["completed", "failed"],
            Duration::from_secs(60),
        )
        .await;
    assert_eq!(batch["status"], "completed", "{batch}");
    assert_eq!(batch["request_counts"]["completed"], 3, "{batch}");
    let listed: Value = env
        .get(&env.alpha, "/v1/batches")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_job_claim_whose_answer_hangs_is_cut_by_the_attempt_timeout_and_the_job_runs_once() {
    let (proxy, env) = proxied_env_with(
        NO_RANDOM_FAULTS,
        Setup {
            workers: LONG_LEASES,
            jobs: "stranded_after = \"1h\"",
            ..Setup::default()
        },
    )
    .await;

    // The worker's claim (the first conditional UpdateItem) is applied and its answer never
    // comes. Without a timeout the worker waits on it until the job's lease lapses.
    proxy.hang_next("UpdateItem", 1);
    let started = Instant::now();
    let id = env
        .submit(&env.alpha, "gpt-hung-claim", "claimed once")
        .await;
    let job = env
        .wait_for(&env.alpha, &id, &["completed", "failed"], WITHIN_TIMEOUTS)
        .await;
    eprintln!(
        "job with one hung claim answer: completed after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(injected(&proxy, "dynamodb", "hung"), 1);
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(env.mock.hits("gpt-hung-claim"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_submit_whose_write_hangs_answers_after_the_attempt_timeout_and_stores_one_job() {
    let (proxy, env) = proxied_env("stranded_after = \"1h\"").await;

    // The job's conditional PutItem is applied and its answer never comes: the request would
    // hang with it. The SDK's second try is refused by the condition and read as done.
    proxy.hang_next("PutItem", 1);
    let (status, job) =
        tokio::time::timeout(WITHIN_TIMEOUTS, submit_async(&env, "stored once", None))
            .await
            .expect("the submit answered within the SDK's timeouts");
    assert_eq!(injected(&proxy, "dynamodb", "hung"), 1);
    assert_eq!(status, 202, "{job}");

    let job = wait_until_done(&env, job["id"].as_str().unwrap()).await;
    assert_eq!(job["status"], "completed", "{job}");
    let listed: Value = env.get(&env.alpha, "/v1/async").await.json().await.unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(env.mock.hits("mock-echo"), 1);
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn with_a_share_of_aws_calls_hung_every_job_and_batch_line_ends_once_within_the_timeouts() {
    const JOBS: usize = 6;
    const LINES: usize = 6;
    // Short tries, so the run is short: each hung call costs one attempt timeout.
    let (proxy, env) = proxied_env_with(
        FaultRates {
            hang: 0.04,
            ..NO_RANDOM_FAULTS
        },
        Setup {
            workers: LONG_LEASES,
            batches: LONG_BATCH_LEASE,
            env: &[
                ("PRISM_AWS_ATTEMPT_TIMEOUT", "2s"),
                ("PRISM_AWS_OPERATION_TIMEOUT", "15s"),
                ("PRISM_AWS_S3_ATTEMPT_TIMEOUT", "3s"),
                ("PRISM_AWS_S3_OPERATION_TIMEOUT", "20s"),
            ],
            ..Setup::default()
        },
    )
    .await;

    let mut jobs = Vec::new();
    for i in 0..JOBS {
        let (status, job) = tokio::time::timeout(
            WITHIN_TIMEOUTS,
            submit_async(&env, &format!("job {i}"), Some(&format!("share-{i}"))),
        )
        .await
        .expect("a submit answered within the SDK's timeouts");
        assert_eq!(status, 202, "{job}");
        jobs.push(job["id"].as_str().unwrap().to_owned());
    }
    let batch = env
        .start_batch(&chat_batch_input("line", "gpt-hung-lines", LINES))
        .await;

    for id in &jobs {
        let job = env
            .wait_for(&env.alpha, id, &["completed", "failed"], WITHIN_TIMEOUTS)
            .await;
        assert_eq!(job["status"], "completed", "{job}");
    }
    let done = env
        .wait_for_batch(&batch, &["completed", "failed"], 2 * WITHIN_TIMEOUTS)
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert_eq!((output.len(), errors.len()), (LINES, 0), "{errors:?}");
    // Jobs are claimed before they call: a hung call never makes a second upstream call.
    assert_eq!(env.mock.hits("mock-echo") as usize, JOBS);
    let hung: u64 = ["dynamodb", "sqs", "s3"]
        .iter()
        .map(|service| injected(&proxy, service, "hung"))
        .sum();
    eprintln!(
        "{hung} hung AWS calls; {} upstream calls for {LINES} lines; {:?}",
        env.mock.hits("gpt-hung-lines"),
        proxy.counts()
    );
    assert!(hung > 0, "no call hung: {:?}", proxy.counts());
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_key_whose_stored_answer_was_lost_is_created_once_and_works() {
    let (proxy, env) = proxied_env("").await;

    // The key's conditional PutItem is applied and its answer lost; the SDK's retry is refused
    // by the condition. `prism keys create` failed here, though the key was stored.
    proxy.reset_after_next("PutItem", 1);
    let out = tokio::process::Command::new(support::PRISM)
        .args(["keys", "create", "--tenant", "gamma", "--data-dir"])
        .arg(env.data_dir())
        .envs(env.backend.env())
        .env("AWS_ENDPOINT_URL", format!("http://{}", proxy.addr))
        .output()
        .await
        .unwrap();
    assert_eq!(injected(&proxy, "dynamodb", "reset_after"), 1);
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(key.starts_with("sk-prism-"), "{key}");

    let response = env.get(&key, "/v1/async").await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// The batch stages' claims that write with a plain conditional `UpdateItem` (no request token
/// makes a retry idempotent): one whose answer hangs is applied, cut by the attempt timeout and
/// sent again, and the retry meets its own write. Long leases and no reconciler rescue inside
/// [`WITHIN_TIMEOUTS`]: the batch ends in time only if the retry reads that write as its own.
async fn env_for_hung_batch_writes() -> (FaultProxy, Env) {
    proxied_env_with(
        NO_RANDOM_FAULTS,
        Setup {
            workers: LONG_LEASES,
            batches: LONG_BATCH_LEASE,
            jobs: "stranded_after = \"1h\"",
            ..Setup::default()
        },
    )
    .await
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_finalize_claim_whose_answer_hangs_still_finalizes_the_batch_once() {
    const LINES: usize = 3;
    let model = "mock-slow-1500-hung-finalize";
    let (proxy, env) = env_for_hung_batch_writes().await;
    let batch = env.start_batch(&chat_batch_input("f", model, LINES)).await;
    // Planned and every line in flight: the chunk's writes from here are transactions, so the
    // next `UpdateItem` is the finalizer's claim.
    support::eventually(WITHIN_TIMEOUTS, "every line in flight", || async {
        env.mock.hits(model) as usize == LINES
    })
    .await;
    proxy.hang_next("UpdateItem", 1);

    let done = env
        .wait_for_batch(&batch, &["completed", "failed"], WITHIN_TIMEOUTS)
        .await;
    assert_eq!(injected(&proxy, "dynamodb", "hung"), 1);
    assert_eq!(done["status"], "completed", "{done}");
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert_eq!((output.len(), errors.len()), (LINES, 0), "{errors:?}");
    assert_eq!(env.mock.hits(model) as usize, LINES, "no line ran twice");
}

#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_plan_whose_answer_hangs_still_queues_the_chunks_at_once() {
    const LINES: usize = 3;
    let model = "gpt-hung-plan";
    let (proxy, env) = env_for_hung_batch_writes().await;
    let file = env
        .upload_batch_file(&env.alpha, chat_batch_input("p", model, LINES).as_bytes())
        .await;
    // The batch's create is a put; the planner's write, which moves it to `in_progress` with its
    // chunks, is the first `UpdateItem` after it.
    proxy.hang_next("UpdateItem", 1);
    let response = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let created: Value = response.json().await.unwrap();
    let batch = created["id"].as_str().unwrap();

    let done = env
        .wait_for_batch(batch, &["completed", "failed"], WITHIN_TIMEOUTS)
        .await;
    assert_eq!(injected(&proxy, "dynamodb", "hung"), 1);
    assert_eq!(done["status"], "completed", "{done}");
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert_eq!((output.len(), errors.len()), (LINES, 0), "{errors:?}");
    assert_eq!(env.mock.hits(model) as usize, LINES);
}

/// A job worker that hangs beside its running work: the worker's cancel poll (a `GetItem`) never
/// answers, and the SDK would not cut it for a minute, so the worker neither sees its call end
/// nor records it, while its consumer keeps the SQS message hidden. Its lease (one attempt plus
/// the margin) lapses, the reconciler sends the job again, another consumer claims it and the job
/// completes, once, long before the hung call would have been cut.
#[tokio::test]
#[ignore = "needs the AWS backend on the emulator: PRISM_TEST_BACKEND=aws (scripts/test.sh)"]
async fn a_job_whose_worker_hangs_is_taken_over_and_completes_once() {
    const HUNG_FOR: Duration = Duration::from_secs(60);
    let (proxy, env) = proxied_env_with(
        NO_RANDOM_FAULTS,
        Setup {
            workers: "upstream_timeout = \"2s\"\nlease_margin = \"1s\"",
            jobs: "stranded_after = \"1s\"",
            env: &[
                ("PRISM_AWS_ATTEMPT_TIMEOUT", "60s"),
                ("PRISM_AWS_OPERATION_TIMEOUT", "60s"),
            ],
            ..Setup::default()
        },
    )
    .await;
    let model = "mock-slow-1500-taken-over";
    let id = env.submit(&env.alpha, model, "taken over").await;
    support::eventually(WITHIN_TIMEOUTS, "the first call under way", || async {
        env.mock.hits(model) == 1
    })
    .await;
    // No request of this test's own goes to prism until the worker's poll has hung.
    let started = Instant::now();
    proxy.hang_next("GetItem", 1);
    support::eventually(WITHIN_TIMEOUTS, "the worker's poll hung", || async {
        injected(&proxy, "dynamodb", "hung") == 1
    })
    .await;

    let job = env
        .wait_for(&env.alpha, &id, &["completed", "failed"], HUNG_FOR / 2)
        .await;
    eprintln!(
        "job with a hung worker: completed {:.1} s after the hang",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(job["status"], "completed", "{job}");
    // The hung worker's call ran to its end upstream but was never recorded; the take-over
    // called again. One outcome stands.
    assert_eq!(env.mock.hits(model), 2);
    assert_eq!(injected(&proxy, "dynamodb", "hung"), 1);
}

//! Lambda sandboxes that die mid-work: the processes of `async-worker` and of
//! `batch-processor` are SIGKILLed while they run, the local stack starts fresh ones (as Lambda
//! starts fresh sandboxes), and the queues' redelivery and the reconciler finish the work. Every
//! job and every batch line still ends exactly once, and only the calls in flight at the kill
//! are repeated. Needs the local Lambda stack: `scripts/test.sh` runs these with
//! `PRISM_TEST_BACKEND=lambda` and `--ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use support::{Setup, chat_batch_input, eventually, start};

/// Processes per function in the local stack (`RunOptions::instances`).
const INSTANCES: u64 = 2;
/// Records per async-worker invocation (the jobs mapping's `BatchSize`).
const JOBS_BATCH: u64 = 10;

#[tokio::test]
#[ignore = "needs the local Lambda stack: PRISM_TEST_BACKEND=lambda (scripts/test.sh)"]
async fn killed_async_worker_sandboxes_still_end_every_job_once() {
    const JOBS: usize = 40;
    let env = start(Setup::default()).await;
    assert!(
        env.backend.is_lambda(),
        "run with PRISM_TEST_BACKEND=lambda"
    );
    let model = "mock-slow-1000-lambda-crash";
    let mut ids = Vec::new();
    for i in 0..JOBS {
        ids.push(env.submit(&env.alpha, model, &format!("job {i}")).await);
    }
    eventually(Duration::from_secs(60), "some jobs done", || async {
        env.mock.hits(model) >= 5
    })
    .await;

    let killed = env.crash_function("async-worker");

    assert!(killed > 0, "no async-worker process to kill");
    let hits_at_kill = env.mock.hits(model);
    assert!(
        hits_at_kill < JOBS as u64,
        "the kill came too late to test anything"
    );
    for id in &ids {
        let job = env
            .wait_for(
                &env.alpha,
                id,
                &["completed", "failed", "cancelled"],
                Duration::from_secs(120),
            )
            .await;
        assert_eq!(job["status"], "completed", "job {id}: {job}");
    }
    let hits = env.mock.hits(model);
    let in_flight = INSTANCES * JOBS_BATCH;
    assert!(
        hits <= JOBS as u64 + in_flight,
        "{hits} upstream calls for {JOBS} jobs with at most {in_flight} in flight at the kill"
    );
}

#[tokio::test]
#[ignore = "needs the local Lambda stack: PRISM_TEST_BACKEND=lambda (scripts/test.sh)"]
async fn killed_batch_processor_sandboxes_still_end_every_line_once() {
    const LINES: usize = 300;
    /// Per processor: the lines in flight plus the finished ones not yet checkpointed.
    const LINE_CONCURRENCY: u64 = 10;
    const CHECKPOINT_LINES: u64 = 5;
    let env = start(Setup {
        batches: "lines_per_chunk = 50\nline_concurrency = 10\ncheckpoint_lines = 5\n\
                  checkpoint_every = \"200ms\"",
        ..Setup::default()
    })
    .await;
    assert!(
        env.backend.is_lambda(),
        "run with PRISM_TEST_BACKEND=lambda"
    );
    let model = "mock-slow-200-lambda-crash";
    let id = env.start_batch(&chat_batch_input("c", model, LINES)).await;
    eventually(Duration::from_secs(60), "some lines done", || async {
        env.mock.hits(model) >= 40
    })
    .await;

    let killed = env.crash_function("batch-processor");

    assert!(killed > 0, "no batch-processor process to kill");
    assert!(
        env.mock.hits(model) < LINES as u64,
        "the kill came too late to test anything"
    );
    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(180))
        .await;
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert_eq!(output.len(), LINES, "every line completed: {errors:?}");
    assert_eq!(done["request_counts"]["completed"], LINES);
    let hits = env.mock.hits(model);
    let in_flight = INSTANCES * (LINE_CONCURRENCY + CHECKPOINT_LINES);
    assert!(
        hits <= LINES as u64 + in_flight,
        "{hits} upstream calls for {LINES} lines with at most {in_flight} at risk at the kill"
    );
}

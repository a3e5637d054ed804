//! A batch survives its process being killed: SIGKILL `prism serve` at random moments while a
//! batch runs, restart it on the same data directory (or the same emulator) each time, and every
//! line still ends exactly once in the output or error file, with no more upstream calls than the
//! lines plus, per kill, the calls that kill cut off.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{Setup, chat_batch_input, start};

const LINES: usize = 5_000;
const KILLS: usize = 10;
/// Lines started but not yet committed, the most a kill can make the next process redo: the
/// upstream calls in flight (`model_concurrency`) plus each running chunk's finished lines not
/// yet checkpointed (`checkpoint_lines`, for at most 10 chunks).
const IN_FLIGHT: usize = 50 + 10 * 10;

/// A pause of 0.4 to 1.6 s that differs from run to run.
fn random_pause() -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    Duration::from_millis(400 + u64::from(nanos % 1200))
}

#[tokio::test]
async fn killed_ten_times_during_a_5000_line_batch_every_line_ends_once() {
    let mut env = start(Setup {
        batches: "lines_per_chunk = 500\nline_concurrency = 50\nmodel_concurrency = 50\n\
                  checkpoint_lines = 10\ncheckpoint_every = \"200ms\"",
        ..Setup::default()
    })
    .await;
    if env.backend.is_aws() {
        return; // the crash model under test is the embedded process's
    }
    let id = env
        .start_batch(&chat_batch_input("k", "mock-slow-150-crash", LINES))
        .await;

    let mut kills = 0;
    for _ in 0..KILLS {
        tokio::time::sleep(random_pause()).await;
        env.kill_server().await;
        kills += 1;
        env.start_server().await;
    }

    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(180))
        .await;
    let (output, errors) = env.finished_batch_lines(&done, LINES).await;
    assert_eq!(done["request_counts"]["total"], LINES);
    assert_eq!(
        done["request_counts"]["completed"].as_u64().unwrap() as usize,
        output.len()
    );
    assert_eq!(
        done["request_counts"]["failed"].as_u64().unwrap() as usize,
        errors.len()
    );
    let hits = env.mock.hits("mock-slow-150-crash") as usize;
    assert!(
        hits <= LINES + kills * IN_FLIGHT,
        "{hits} upstream calls for {LINES} lines and {kills} kills"
    );
    eprintln!("{kills} kills: {hits} upstream calls for {LINES} lines");
}

const SLOW_LINES: usize = 400;
const LINE_CONCURRENCY: usize = 20;
const SLOW_KILLS: usize = 4;

/// A pause of 1.5 to 3 s that differs from run to run: each kill lands mid-wave of 1 s calls.
fn pause_between_kills() -> Duration {
    random_pause() + Duration::from_millis(1_100)
}

/// The invariant of issue 11: a kill repeats at most the calls in flight. One chunk runs at a
/// time here, so at most `line_concurrency` lines are started and not yet committed when a kill
/// lands, and nothing else is ever run twice.
#[tokio::test]
async fn each_kill_repeats_at_most_the_calls_in_flight_on_either_backend() {
    let mut env = start(Setup {
        batches: "lines_per_chunk = 1000\nline_concurrency = 20\nlease = \"3s\"",
        ..Setup::default()
    })
    .await;
    if env.backend.is_lambda() {
        return; // lambda_crashes kills Lambda sandboxes instead
    }
    let model = "mock-slow-1000-kills";
    let id = env
        .start_batch(&chat_batch_input("s", model, SLOW_LINES))
        .await;
    for _ in 0..SLOW_KILLS {
        tokio::time::sleep(pause_between_kills()).await;
        env.kill_server().await;
        env.start_server().await;
    }
    let done = env
        .wait_for_batch(&id, &["completed"], Duration::from_secs(240))
        .await;
    let (output, errors) = env.finished_batch_lines(&done, SLOW_LINES).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(output.len(), SLOW_LINES);
    let hits = env.mock.hits(model) as usize;
    eprintln!("{SLOW_KILLS} kills: {hits} upstream calls for {SLOW_LINES} lines");
    assert!(
        hits <= SLOW_LINES + SLOW_KILLS * LINE_CONCURRENCY,
        "{hits} upstream calls for {SLOW_LINES} lines and {SLOW_KILLS} kills of {LINE_CONCURRENCY} in flight"
    );
}

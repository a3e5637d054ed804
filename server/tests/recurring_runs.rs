//! Recurring scheduled completions through `prism serve`, run: runs at each fire time, a schedule
//! toward another endpoint, pause, resume, delete, `max_runs`, `end_at`, duplicate firings, a kill
//! -9 across a fire time, and overlap while a run hangs. Runs on both backends
//! (`PRISM_TEST_BACKEND`); on AWS, EventBridge is the emulator's, fired by the testkit's pump.
//! Time is real: tests other than the every-minute one run on embedded with a seconds field
//! (`recurring_min_interval = "1s"`), so they take seconds. Creating, listing and validating
//! schedules is `recurring.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::sync::Arc;
use std::time::Duration;

use prism_core::{Clock, SystemClock, Timestamp};
use prism_testkit::schedule_pump::EmulatorSchedulePump;
use serde_json::{Value, json};
use support::recurring::{action, create, recurring, runs, schedule};
use support::{Backend, Env, Setup, chat_body, eventually, rfc3339_in, start};

/// Lets a seconds field through, so embedded tests need not wait for minute boundaries.
const FAST: Setup<'static> = Setup {
    jobs: "recurring_min_interval = \"1s\"",
    workers: "",
    http: "",
    files: "",
    batches: "",
    models: r#"["*"]"#,
    aws_endpoint: None,
    webhooks: "",
    prices: "",
    extra: "",
    env: &[],
};

fn fast() -> Setup<'static> {
    FAST
}

/// The EventBridge schedule group of an AWS or Lambda stack.
fn schedule_group(env: &Env) -> Option<&str> {
    match &env.backend {
        Backend::Aws(settings) => Some(&settings.schedules.group),
        Backend::Lambda(stack) => Some(&stack.settings.schedules.group),
        Backend::Embedded => None,
    }
}

/// On AWS: a pump firing the group's due schedules every 500 ms, as EventBridge would (on
/// Lambda, the local stack's stand-in for EventBridge fires them already; the pump only sends
/// what a test asks).
async fn pump_for(env: &Env) -> Option<(EmulatorSchedulePump, tokio::task::JoinHandle<()>)> {
    let pump = EmulatorSchedulePump::connect(schedule_group(env)?).await;
    let looping = pump.clone();
    let fires_by_itself = env.backend.is_lambda();
    let task = tokio::spawn(async move {
        if fires_by_itself {
            return;
        }
        loop {
            looping.fire_due(SystemClock.now()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    Some((pump, task))
}

/// Polls until `check` answers something; fails with `what` after `within`.
async fn poll<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = check().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn run_count(s: &Value) -> u64 {
    s["run_count"].as_u64().unwrap()
}

fn ts(text: &Value) -> Timestamp {
    prism_core::clock::parse_rfc3339(text.as_str().unwrap()).unwrap()
}

/// A cron that fires once a day, `in_ms` from now (rounded up to the second), and that time.
fn daily_in(in_ms: i64) -> (String, Timestamp) {
    let at = Timestamp((SystemClock.now().millis() + in_ms).div_euclid(1000) * 1000 + 1000);
    let text = prism_core::clock::format_rfc3339(at);
    let (h, m, s) = (&text[11..13], &text[14..16], &text[17..19]);
    let trim = |f: &str| f.trim_start_matches('0').to_owned();
    let field = |f: &str| {
        if trim(f).is_empty() {
            "0".to_owned()
        } else {
            trim(f)
        }
    };
    (format!("{} {} {} * * *", field(s), field(m), field(h)), at)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_minute_schedule_runs_at_each_minute_boundary_and_the_runs_complete() {
    let env = start(Setup::default()).await;
    let pump = pump_for(&env).await;
    let created = create(
        &env,
        &recurring(
            json!({"cron": "* * * * *", "timezone": "Europe/Berlin", "max_runs": 2}),
            "gpt-minute",
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("sched_"));
    assert_eq!(created["object"], "scheduled.job");
    assert_eq!(created["status"], "active");
    assert_eq!(created["schedule"]["cron"], "* * * * *");
    assert_eq!(created["schedule"]["timezone"], "Europe/Berlin");
    assert_eq!(created["schedule"]["max_runs"], 2);
    assert_eq!(created["schedule"]["overlap"], "skip");
    assert_eq!(created["schedule"]["catch_up"], "latest");
    assert_eq!(created["run_count"], 0);
    assert!(created["last_run_at"].is_null());
    let first = ts(&created["next_run_at"]);
    assert_eq!(first.millis() % 60_000, 0, "{created}");
    if let Some((pump, _)) = &pump {
        let eventbridge = pump.schedule(&id).await;
        assert_eq!(eventbridge.schedule_expression(), Some("cron(* * * * ? *)"));
        assert_eq!(
            eventbridge.schedule_expression_timezone(),
            Some("Europe/Berlin")
        );
    }

    let done = poll(
        Duration::from_secs(150),
        "two runs, then finished",
        || async { Some(schedule(&env, &id).await).filter(|s| s["status"] == "finished") },
    )
    .await;
    assert_eq!(run_count(&done), 2);
    assert!(done["next_run_at"].is_null() && done["completed_at"].is_i64());
    let second = first.plus(Duration::from_secs(60));
    assert_eq!(ts(&done["last_run_at"]), second);

    let listed = poll(Duration::from_secs(20), "both runs complete", || async {
        Some(runs(&env, &id, "").await)
            .filter(|l| l.len() == 2 && l.iter().all(|r| r["status"] == "completed"))
    })
    .await;
    // Newest first; each an async job of this schedule, made at its minute boundary.
    let slack = if env.backend.is_aws() { 5 } else { 2 };
    for (run, boundary) in listed.iter().zip([second, first]) {
        assert!(run["id"].as_str().unwrap().starts_with("job_"));
        assert_eq!(run["object"], "async.job");
        assert_eq!(run["scheduled_job_id"], id.as_str());
        let made = run["created_at"].as_i64().unwrap();
        assert!(
            (0..=slack).contains(&(made - boundary.unix_seconds())),
            "run made at {made}, fire time {}",
            boundary.unix_seconds()
        );
        assert_eq!(
            run["result"]["choices"][0]["message"]["content"],
            "recurring hello"
        );
        let alone = env.job(&env.alpha, run["id"].as_str().unwrap()).await;
        assert_eq!(alone["status"], "completed");
    }
    assert_eq!(env.mock.hits("gpt-minute"), 2);
    if let Some((pump, task)) = pump {
        assert!(
            !pump.names().await.contains(&id),
            "finished: schedule removed"
        );
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_schedule_naming_an_endpoint_runs_it_and_each_runs_result_is_its_response() {
    let env = start(fast()).await;
    // AWS keeps EventBridge's one-minute floor; embedded fires on the next second.
    let cron = if env.backend.is_aws() {
        "* * * * *"
    } else {
        "* * * * * *"
    };
    let pump = pump_for(&env).await;
    let created = create(
        &env,
        &json!({
            "schedule": {"cron": cron, "timezone": "UTC", "max_runs": 1},
            "endpoint": "/v1/responses",
            "request": {"model": "gpt-recurring-response", "input": "every run"},
        }),
    )
    .await;
    assert_eq!(created["endpoint"], "/v1/responses");
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(schedule(&env, &id).await["endpoint"], "/v1/responses");
    let run = poll(Duration::from_secs(150), "a completed run", || async {
        runs(&env, &id, "")
            .await
            .into_iter()
            .find(|r| r["status"] == "completed")
    })
    .await;
    assert_eq!(run["endpoint"], "/v1/responses", "{run}");
    assert_eq!(run["result"]["object"], "response", "{run}");
    assert_eq!(
        run["result"]["output"][0]["content"][0]["text"],
        "every run"
    );

    // The request is read by the named endpoint's rules.
    let refused = env
        .post(
            &env.alpha,
            "/v1/scheduled",
            &json!({
                "schedule": {"cron": "0 9 * * *", "timezone": "UTC"},
                "endpoint": "/v1/embeddings",
                "request": chat_body("text-embedding-3-small", "not an input"),
            }),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let error: Value = refused.json().await.unwrap();
    assert_eq!(error["error"]["param"], "request.input", "{error}");
    if let Some((_, task)) = pump {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_resume_and_delete_do_what_they_say() {
    let env = start(fast()).await;
    if env.backend.is_aws() {
        return pause_resume_and_delete_set_the_eventbridge_schedule(env).await;
    }
    let created = create(
        &env,
        &recurring(
            json!({"cron": "*/2 * * * * *", "timezone": "UTC"}),
            "gpt-life",
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    eventually(Duration::from_secs(10), "a first run", || async {
        run_count(&schedule(&env, id).await) >= 1
    })
    .await;

    let (status, paused) = action(&env, id, "pause").await;
    assert_eq!((status, paused["status"].as_str()), (200, Some("paused")));
    assert!(paused["next_run_at"].is_null());
    let (status, again) = action(&env, id, "pause").await;
    assert_eq!((status, again["status"].as_str()), (200, Some("paused")));
    let count = run_count(&paused);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let still = schedule(&env, id).await;
    assert_eq!(run_count(&still), count, "no runs while paused");
    assert_eq!(runs(&env, id, "").await.len() as u64, count);

    let (status, resumed) = action(&env, id, "resume").await;
    assert_eq!((status, resumed["status"].as_str()), (200, Some("active")));
    assert!(resumed["next_run_at"].is_string());
    eventually(
        Duration::from_secs(10),
        "runs again after resume",
        || async { run_count(&schedule(&env, id).await) > count },
    )
    .await;

    let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
    assert_eq!(response.status(), 200);
    let deleted: Value = response.json().await.unwrap();
    assert_eq!(deleted["status"], "cancelled");
    assert!(deleted["completed_at"].is_i64() && deleted["next_run_at"].is_null());
    let count = run_count(&deleted);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    assert_eq!(
        run_count(&schedule(&env, id).await),
        count,
        "no runs after delete"
    );
    assert_eq!(runs(&env, id, "").await.len() as u64, count);
    for verb in ["resume", "pause"] {
        let (status, error) = action(&env, id, verb).await;
        assert_eq!(status, 409, "{verb}: {error}");
        assert!(
            error["error"]["message"]
                .as_str()
                .unwrap()
                .contains("cancelled")
        );
    }
    let again = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
    assert_eq!(again.status(), 200);
    // Another tenant sees none of it.
    let foreign = env.get(&env.beta, &format!("/v1/scheduled/{id}")).await;
    assert_eq!(foreign.status(), 404);
    let foreign = env
        .post(&env.beta, &format!("/v1/scheduled/{id}/pause"), &json!({}))
        .await;
    assert_eq!(foreign.status(), 404);
}

/// The AWS half of the lifecycle: each action sets the EventBridge schedule's state.
async fn pause_resume_and_delete_set_the_eventbridge_schedule(env: Env) {
    let group = schedule_group(&env).expect("an AWS or Lambda stack");
    let pump = EmulatorSchedulePump::connect(group).await;
    let created = create(
        &env,
        &recurring(
            json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "start_at": rfc3339_in(3_600_000), "end_at": rfc3339_in(90 * 86_400_000)}),
            "gpt-life",
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let eventbridge = pump.schedule(id).await;
    assert_eq!(
        eventbridge.schedule_expression(),
        Some("cron(0 9 ? * 2-6 *)")
    );
    assert!(eventbridge.start_date().is_some() && eventbridge.end_date().is_some());
    assert_eq!(pump.state(id).await.as_deref(), Some("ENABLED"));
    let (status, _) = action(&env, id, "pause").await;
    assert_eq!(status, 200);
    assert_eq!(pump.state(id).await.as_deref(), Some("DISABLED"));
    let (status, _) = action(&env, id, "resume").await;
    assert_eq!(status, 200);
    assert_eq!(pump.state(id).await.as_deref(), Some("ENABLED"));
    let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
    assert_eq!(response.status(), 200);
    assert!(!pump.names().await.contains(&id.to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn max_runs_and_end_at_finish_the_schedule() {
    let env = start(fast()).await;
    if env.backend.is_aws() {
        return; // seconds fields are embedded-only; the every-minute test covers max_runs on AWS
    }
    let limited = create(
        &env,
        &recurring(
            json!({"cron": "* * * * * *", "timezone": "UTC", "max_runs": 3}),
            "gpt-max",
        ),
    )
    .await;
    let ending = create(
        &env,
        &recurring(
            json!({"cron": "* * * * * *", "timezone": "UTC", "end_at": rfc3339_in(3_500)}),
            "gpt-end",
        ),
    )
    .await;
    for s in [&limited, &ending] {
        let id = s["id"].as_str().unwrap();
        eventually(Duration::from_secs(15), "finished", || async {
            schedule(&env, id).await["status"] == "finished"
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let limited = schedule(&env, limited["id"].as_str().unwrap()).await;
    assert_eq!(run_count(&limited), 3);
    assert!(limited["next_run_at"].is_null());
    assert_eq!(
        runs(&env, limited["id"].as_str().unwrap(), "").await.len(),
        3
    );
    let ending = schedule(&env, ending["id"].as_str().unwrap()).await;
    let made = run_count(&ending);
    assert!((2..=4).contains(&made), "{ending}");
    assert!(ts(&ending["last_run_at"]) <= ts(&ending["schedule"]["end_at"]));
    assert_eq!(
        runs(&env, ending["id"].as_str().unwrap(), "").await.len() as u64,
        made
    );
    // Runs filter by status and page newest first.
    let id = limited["id"].as_str().unwrap();
    eventually(Duration::from_secs(10), "runs complete", || async {
        runs(&env, id, "?status=completed").await.len() == 3
    })
    .await;
    let page = runs(&env, id, "?limit=2").await;
    assert_eq!(page.len(), 2);
    let rest = runs(
        &env,
        id,
        &format!("?after={}", page[1]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(rest.len(), 1);
    assert!(page[0]["id"].as_str() > page[1]["id"].as_str());
    assert!(runs(&env, id, "?status=running").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_firing_delivered_twice_makes_one_run() {
    let env = start(fast()).await;
    let (cron, at, fire) = if env.backend.is_aws() {
        // A minute boundary: the pump fires it, then sends it twice more.
        ("* * * * *".to_owned(), Timestamp(0), true)
    } else {
        let (cron, at) = daily_in(2_000);
        (cron, at, false)
    };
    let pump = pump_for(&env).await;
    let created = create(
        &env,
        &recurring(
            json!({"cron": cron, "timezone": "UTC", "max_runs": 5}),
            "gpt-dup",
        ),
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    let at = if fire {
        ts(&created["next_run_at"])
    } else {
        at
    };
    eventually(Duration::from_secs(75), "the first run", || async {
        run_count(&schedule(&env, &id).await) == 1
    })
    .await;
    let tenant = prism_core::TenantId::parse("alpha").unwrap();
    let item =
        prism_core::recurring::fire::firing(&tenant, &prism_core::JobId::parse(&id).unwrap(), at);
    let queue = match &pump {
        Some((pump, _)) => {
            pump.invoke_recurring(&id, at).await;
            pump.invoke_recurring(&id, at).await;
            None
        }
        None => {
            // The same firing queued again beside the server, in its own database.
            let db =
                prism_embedded::Database::open(&env.data_dir().join(prism_embedded::DATABASE_FILE))
                    .unwrap();
            let queue = prism_embedded::SqliteWorkQueue::new(db, Arc::new(SystemClock));
            use prism_core::ports::WorkQueue;
            queue.enqueue(&item, Duration::ZERO).await.unwrap();
            Some(queue)
        }
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    if let Some(queue) = queue {
        // The duplicate was delivered and acknowledged: only tomorrow's firing still waits.
        let next = queue.next_visible_at().await.unwrap().unwrap();
        assert!(next > SystemClock.now().plus(Duration::from_secs(3600)));
    }
    let after = schedule(&env, &id).await;
    assert_eq!(run_count(&after), 1, "{after}");
    assert_eq!(after["skipped_count"], 0);
    let listed = runs(&env, &id, "").await;
    assert_eq!(listed.len(), 1);
    assert_eq!(env.mock.hits("gpt-dup"), 1);
    if let Some((_, task)) = pump {
        task.abort();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kill_across_a_fire_time_makes_exactly_one_run_after_restart() {
    let mut env = start(fast()).await;
    if env.backend.is_aws() {
        return; // EventBridge holds the schedule on AWS; a server restart misses no firing
    }
    let (cron, at) = daily_in(3_000);
    let created = create(
        &env,
        &recurring(json!({"cron": cron, "timezone": "UTC"}), "gpt-restart"),
    )
    .await;
    let id = created["id"].as_str().unwrap();
    assert_eq!(ts(&created["next_run_at"]), at);
    env.kill_server().await;
    let wait = SystemClock.now().until(at) + Duration::from_secs(2);
    tokio::time::sleep(wait).await;
    env.start_server().await;
    eventually(Duration::from_secs(10), "the missed run", || async {
        runs(&env, id, "?status=completed").await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = schedule(&env, id).await;
    assert_eq!(run_count(&after), 1, "{after}");
    assert_eq!(ts(&after["last_run_at"]), at);
    assert_eq!(
        ts(&after["next_run_at"]),
        at.plus(Duration::from_secs(86_400))
    );
    assert_eq!(runs(&env, id, "").await.len(), 1);
    assert_eq!(env.mock.hits("gpt-restart"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn delete_lets_a_running_run_finish_unless_cancel_running_and_overlap_skips_while_it_runs() {
    let env = start(Setup {
        workers: "upstream_timeout = \"60s\"",
        ..fast()
    })
    .await;
    if env.backend.is_aws() {
        return; // seconds fields are embedded-only
    }
    let mut ids = Vec::new();
    for model in ["mock-hang-keep", "mock-hang-cancel"] {
        let created = create(
            &env,
            &recurring(json!({"cron": "* * * * * *", "timezone": "UTC"}), model),
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        eventually(Duration::from_secs(10), "a run hangs upstream", || async {
            runs(&env, id, "?status=running").await.len() == 1
        })
        .await;
    }
    // While the first run hangs, later fire times are skipped (overlap: skip), not run.
    eventually(Duration::from_secs(10), "firings skipped", || async {
        schedule(&env, &ids[0]).await["skipped_count"]
            .as_u64()
            .unwrap()
            >= 2
    })
    .await;
    assert_eq!(runs(&env, &ids[0], "").await.len(), 1);

    let keep = env
        .delete(&env.alpha, &format!("/v1/scheduled/{}", ids[0]))
        .await;
    assert_eq!(keep.status(), 200);
    let cancel = env
        .delete(
            &env.alpha,
            &format!("/v1/scheduled/{}?cancel_running=true", ids[1]),
        )
        .await;
    assert_eq!(cancel.status(), 200);
    assert_eq!(cancel.json::<Value>().await.unwrap()["status"], "cancelled");
    eventually(
        Duration::from_secs(5),
        "the run's upstream call aborted",
        || async { env.mock.aborted("mock-hang-cancel") == 1 },
    )
    .await;
    assert_eq!(runs(&env, &ids[1], "?status=cancelled").await.len(), 1);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        runs(&env, &ids[0], "?status=running").await.len(),
        1,
        "a run in progress finishes by itself"
    );
    assert_eq!(env.mock.aborted("mock-hang-keep"), 0);
    let bad = env
        .delete(
            &env.alpha,
            &format!("/v1/scheduled/{}?cancel_running=yes", ids[0]),
        )
        .await;
    assert_eq!(bad.status(), 400);
}

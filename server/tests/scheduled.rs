//! Scheduled chat completions through `prism serve`: create, run at the due time, cancel,
//! listing, validation, tenancy and restarts. Runs on both backends (`PRISM_TEST_BACKEND`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{Setup, chat_body, eventually, rfc3339_in, start};

const SOON: Duration = Duration::from_secs(15);
const HOUR_MS: i64 = 3_600_000;

/// Seconds of an RFC 3339 UTC time, to compare with the unix-second timestamps of the object.
fn unix_seconds(rfc3339: &str) -> i64 {
    prism_core::clock::parse_rfc3339(rfc3339)
        .unwrap()
        .unix_seconds()
}

#[tokio::test]
async fn scheduled_job_runs_at_its_time_and_holds_the_completion() {
    let env = start(Setup::default()).await;
    // Given with a +02:00 offset: answered in UTC.
    let due = rfc3339_in(2_000);
    let due_utc = prism_core::clock::parse_rfc3339(&due).unwrap();
    let shifted = prism_core::Timestamp(due_utc.millis() + 2 * HOUR_MS);
    let local = prism_core::clock::format_rfc3339(shifted).replace('Z', "+02:00");
    let body = json!({
        "scheduled_at": local,
        "request": chat_body("gpt-sched", "scheduled hello"),
        "metadata": {"team": "search"},
    });
    let response = env.post(&env.alpha, "/v1/scheduled", &body).await;
    assert_eq!(response.status(), 201);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert!(id.starts_with("sched_"));
    assert_eq!(job["object"], "scheduled.job");
    assert_eq!(job["status"], "pending");
    assert_eq!(job["scheduled_at"], due);
    assert_eq!(job["model"], "gpt-sched");
    assert_eq!(job["metadata"], json!({"team": "search"}));
    assert!(job["created_at"].is_i64());
    assert!(job["started_at"].is_null() && job["result"].is_null() && job["error"].is_null());

    let done = env.wait_for(&env.alpha, id, &["completed"], SOON).await;
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "scheduled hello"
    );
    assert!(
        done["started_at"].as_i64().unwrap() >= unix_seconds(&due),
        "started before its time: {done}"
    );
    assert!(done["completed_at"].is_i64() && done["error"].is_null());
    assert_eq!(done["metadata"], json!({"team": "search"}));
    assert_eq!(env.mock.hits("gpt-sched"), 1);
}

#[tokio::test]
async fn job_scheduled_30s_ahead_waits_for_its_time_then_runs() {
    // On AWS this lead takes the delayed-message path (SQS DelaySeconds).
    let env = start(Setup::default()).await;
    let id = env.schedule(&env.alpha, "gpt-later", "later", 30_000).await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    assert_eq!(env.job(&env.alpha, &id).await["status"], "pending");
    assert_eq!(env.mock.hits("gpt-later"), 0);
    let done = env
        .wait_for(&env.alpha, &id, &["completed"], Duration::from_secs(30))
        .await;
    assert!(
        done["started_at"].as_i64().unwrap()
            >= unix_seconds(done["scheduled_at"].as_str().unwrap())
    );
    assert_eq!(env.mock.hits("gpt-later"), 1);
}

#[tokio::test]
async fn cancel_before_its_time_means_the_upstream_is_never_called() {
    let env = start(Setup::default()).await;
    let soon = env.schedule(&env.alpha, "gpt-cancelled", "x", 3_000).await;
    // Far ahead: on AWS this one has an EventBridge schedule, which the cancel deletes.
    let far = env
        .schedule(&env.alpha, "gpt-cancelled", "x", 2 * HOUR_MS)
        .await;
    for id in [&soon, &far] {
        let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
        assert_eq!(response.status(), 200);
        let job: Value = response.json().await.unwrap();
        assert_eq!(job["status"], "cancelled");
        assert_eq!(job["object"], "scheduled.job");
        assert!(job["completed_at"].is_i64());
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(env.mock.hits("gpt-cancelled"), 0);
    assert_eq!(env.job(&env.alpha, &soon).await["status"], "cancelled");
}

#[tokio::test]
async fn cancel_running_scheduled_job_aborts_the_upstream_call() {
    let env = start(Setup {
        workers: "upstream_timeout = \"60s\"",
        ..Setup::default()
    })
    .await;
    let id = env.schedule(&env.alpha, "mock-hang-sched", "x", 0).await;
    env.wait_for(&env.alpha, &id, &["running"], SOON).await;
    eventually(SOON, "upstream call in flight", || async {
        env.mock.hits("mock-hang-sched") == 1
    })
    .await;
    let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    eventually(
        Duration::from_secs(5),
        "upstream request aborted",
        || async { env.mock.aborted("mock-hang-sched") == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.job(&env.alpha, &id).await["status"], "cancelled");
    assert_eq!(
        env.mock.hits("mock-hang-sched"),
        1,
        "no retry after a cancel"
    );
}

#[tokio::test]
async fn cancel_answers_409_on_finished_jobs_and_200_again_on_cancelled_ones() {
    let env = start(Setup::default()).await;
    let completed = env.schedule(&env.alpha, "gpt-done", "x", 0).await;
    let failed = env.schedule(&env.alpha, "mock-400-sched", "x", 0).await;
    env.wait_for(&env.alpha, &completed, &["completed"], SOON)
        .await;
    env.wait_for(&env.alpha, &failed, &["failed"], SOON).await;
    for (id, status) in [(&completed, "completed"), (&failed, "failed")] {
        let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
        assert_eq!(response.status(), 409);
        assert_eq!(response.headers()["x-should-retry"], "false");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert!(error["error"]["message"].as_str().unwrap().contains(status));
    }
    let pending = env.schedule(&env.alpha, "gpt-twice", "x", HOUR_MS).await;
    for _ in 0..2 {
        let response = env
            .delete(&env.alpha, &format!("/v1/scheduled/{pending}"))
            .await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap()["status"],
            "cancelled"
        );
    }
}

#[tokio::test]
async fn list_pages_45_scheduled_jobs_as_20_20_5_newest_first() {
    let env = start(Setup::default()).await;
    let mut made = Vec::new();
    for i in 0..45 {
        made.push(
            env.schedule(&env.alpha, "gpt-list", &format!("{i}"), HOUR_MS)
                .await,
        );
    }
    let asynchronous = env.submit(&env.alpha, "gpt-list", "not scheduled").await;
    made.reverse();
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    for (expected, more) in [(20, true), (20, true), (5, false)] {
        let path = match &after {
            Some(cursor) => format!("/v1/scheduled?limit=20&after={cursor}"),
            None => "/v1/scheduled?limit=20".to_owned(),
        };
        let page: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
        assert_eq!(page["object"], "list");
        let ids: Vec<String> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids.len(), expected);
        assert_eq!(page["has_more"], more);
        assert_eq!(page["first_id"], ids[0].as_str());
        assert_eq!(page["last_id"], ids[ids.len() - 1].as_str());
        assert!(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .all(|j| j["object"] == "scheduled.job")
        );
        after = Some(ids[ids.len() - 1].clone());
        seen.extend(ids);
    }
    assert_eq!(seen, made, "every job once, newest first, no async job");
    assert!(!seen.contains(&asynchronous));

    let cancelled = &made[7];
    env.delete(&env.alpha, &format!("/v1/scheduled/{cancelled}"))
        .await;
    let page: Value = env
        .get(&env.alpha, "/v1/scheduled?status=cancelled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert_eq!(page["data"][0]["id"], cancelled.as_str());
    let bad = env.get(&env.alpha, "/v1/scheduled?limit=0").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn every_invalid_create_is_a_400_naming_its_param() {
    let env = start(Setup {
        models: r#"["gpt-*"]"#,
        ..Setup::default()
    })
    .await;
    let request = chat_body("gpt-valid", "x");
    let future = rfc3339_in(HOUR_MS);
    let seventeen: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        (json!({"request": request}), "scheduled_at"),
        (
            json!({"scheduled_at": "next tuesday", "request": request}),
            "scheduled_at",
        ),
        (
            json!({"scheduled_at": "2030-01-01T09:00:00", "request": request}),
            "scheduled_at",
        ),
        (
            json!({"scheduled_at": rfc3339_in(-120_000), "request": request}),
            "scheduled_at",
        ),
        (
            json!({"scheduled_at": rfc3339_in(400 * 24 * HOUR_MS), "request": request}),
            "scheduled_at",
        ),
        (json!({"scheduled_at": future}), "request"),
        (
            json!({"scheduled_at": future, "request": {"model": "gpt-valid"}}),
            "request.messages",
        ),
        (
            json!({"scheduled_at": future, "request": "hello"}),
            "request",
        ),
        (
            json!({"scheduled_at": future, "request": {"model": "gpt-valid", "stream": true, "messages": [{"role": "user", "content": "x"}]}}),
            "request.stream",
        ),
        (
            json!({"scheduled_at": future, "request": chat_body("claude-unrouted", "x")}),
            "request.model",
        ),
        (
            json!({"scheduled_at": future, "request": request, "metadata": seventeen}),
            "metadata",
        ),
        (
            json!({"scheduled_at": future, "request": request, "metadata": {"k": 1}}),
            "metadata",
        ),
    ];
    for (body, param) in cases {
        let response = env.post(&env.alpha, "/v1/scheduled", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(error["error"]["param"], param, "{body}: {error}");
        assert!(!error["error"]["message"].as_str().unwrap().is_empty());
    }
    let response = env
        .http
        .post(env.url("/v1/scheduled"))
        .bearer_auth(&env.alpha)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let list: Value = env
        .get(&env.alpha, "/v1/scheduled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );
    assert_eq!(env.mock.hits("gpt-valid"), 0);
}

#[tokio::test]
async fn another_tenants_scheduled_job_is_a_404_on_get_list_and_delete() {
    let env = start(Setup::default()).await;
    let id = env.schedule(&env.alpha, "gpt-private", "x", HOUR_MS).await;
    for response in [
        env.get(&env.beta, &format!("/v1/scheduled/{id}")).await,
        env.delete(&env.beta, &format!("/v1/scheduled/{id}")).await,
        env.get(&env.alpha, &format!("/v1/async/{id}")).await,
        env.get(&env.alpha, "/v1/scheduled/sched_unknown").await,
    ] {
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let theirs: Value = env
        .get(&env.beta, "/v1/scheduled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    assert_eq!(env.job(&env.alpha, &id).await["status"], "pending");
}

#[tokio::test]
async fn idempotency_key_replays_the_original_scheduled_job() {
    let env = start(Setup::default()).await;
    let body = json!({"scheduled_at": rfc3339_in(HOUR_MS), "request": chat_body("gpt-idem", "x")});
    let send = |body: Value| {
        env.http
            .post(env.url("/v1/scheduled"))
            .bearer_auth(&env.alpha)
            .header("idempotency-key", "sched-key-1")
            .json(&body)
            .send()
    };
    let first: Value = send(body.clone()).await.unwrap().json().await.unwrap();
    let again = send(body.clone()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], first["id"]);
    let mut other = body;
    other["scheduled_at"] = json!(rfc3339_in(2 * HOUR_MS));
    assert_eq!(send(other).await.unwrap().status(), 400);
}

#[tokio::test]
async fn restart_across_the_due_time_fires_the_job_once() {
    let mut env = start(Setup::default()).await;
    let before = env
        .schedule(&env.alpha, "gpt-restart", "before", 4_000)
        .await;
    let across = env
        .schedule(&env.alpha, "gpt-restart", "across", 2_000)
        .await;
    // Down before either is due, back after both are.
    env.kill_server().await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    env.start_server().await;
    for id in [&before, &across] {
        env.wait_for(&env.alpha, id, &["completed"], SOON).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.mock.hits("gpt-restart"), 2, "each job ran once");

    // A restart before the due time keeps the job waiting for its time.
    let later = env
        .schedule(&env.alpha, "gpt-restart-later", "x", 6_000)
        .await;
    env.stop_server(Duration::from_secs(10)).await;
    env.start_server().await;
    assert_eq!(env.job(&env.alpha, &later).await["status"], "pending");
    env.wait_for(&env.alpha, &later, &["completed"], SOON).await;
    assert_eq!(env.mock.hits("gpt-restart-later"), 1);
}

//! Recurring scheduled jobs through `prism serve`, made and listed: every validation error and
//! the per-tenant cap, a create retried with its `Idempotency-Key`, and `/v1/scheduled` listing
//! one-time and recurring jobs together. Runs on both backends (`PRISM_TEST_BACKEND`). The
//! schedules' runs are `recurring_runs.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use serde_json::{Value, json};
use support::recurring::{action, create, recurring};
use support::{Env, Setup, chat_body, rfc3339_in, start};

#[tokio::test]
async fn each_invalid_schedule_is_a_400_naming_its_param() {
    let env = start(Setup {
        jobs: "max_recurring_per_tenant = 2",
        ..Setup::default()
    })
    .await;
    let request = chat_body("gpt-invalid", "x");
    let at = rfc3339_in(3_600_000);
    let ok = json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"});
    let with = |patch: Value| {
        let mut schedule = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            schedule[k] = v.clone();
        }
        json!({"schedule": schedule, "request": request})
    };
    let cases = [
        (
            json!({"scheduled_at": at, "schedule": ok, "request": request}),
            "schedule",
            "conflicting_parameters",
            "",
        ),
        (
            json!({"request": request}),
            "scheduled_at",
            "missing_required_parameter",
            "",
        ),
        (
            with(json!({"cron": "0 25 * * *"})),
            "schedule.cron",
            "invalid_cron",
            "position 2",
        ),
        (
            with(json!({"cron": "0 9 * *"})),
            "schedule.cron",
            "invalid_cron",
            "position 7",
        ),
        (
            with(json!({"timezone": "Mars/Olympus_Mons"})),
            "schedule.timezone",
            "unknown_timezone",
            "Mars",
        ),
        (
            with(json!({"cron": "*/30 * * * * *"})),
            "schedule.cron",
            "interval_too_short",
            "",
        ),
        (
            with(json!({"start_at": rfc3339_in(7_200_000), "end_at": at})),
            "schedule.end_at",
            "end_before_start",
            "",
        ),
        (
            with(json!({"max_runs": 0})),
            "schedule.max_runs",
            "invalid_value",
            "",
        ),
        (
            with(json!({"overlap": "sometimes"})),
            "schedule.overlap",
            "invalid_value",
            "",
        ),
    ];
    for (body, param, code, text) in cases {
        let response = env.post(&env.alpha, "/v1/scheduled", &body).await;
        assert_eq!(response.status(), 400, "{body}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(text),
            "{error}"
        );
    }
    // The per-tenant cap counts active and paused schedules; a deleted one frees its place.
    let first = create(&env, &json!({"schedule": ok, "request": request})).await;
    create(&env, &json!({"schedule": ok, "request": request})).await;
    let response = env
        .post(
            &env.alpha,
            "/v1/scheduled",
            &json!({"schedule": ok, "request": request}),
        )
        .await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "schedule");
    assert_eq!(error["error"]["code"], "too_many_recurring_schedules");
    let other = env
        .post(
            &env.beta,
            "/v1/scheduled",
            &json!({"schedule": ok, "request": request}),
        )
        .await;
    assert_eq!(other.status(), 201, "the cap is per tenant");
    let id = first["id"].as_str().unwrap();
    assert_eq!(
        env.delete(&env.alpha, &format!("/v1/scheduled/{id}"))
            .await
            .status(),
        200
    );
    create(&env, &json!({"schedule": ok, "request": request})).await;
}

async fn create_with_key(env: &Env, key: &str, body: &Value) -> (u16, Value) {
    let response = env
        .http
        .post(env.url("/v1/scheduled"))
        .bearer_auth(&env.alpha)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_recurring_create_retried_with_its_idempotency_key_answers_the_same_schedule() {
    let env = start(Setup::default()).await;
    let body = recurring(
        json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"}),
        "gpt-idem",
    );
    let (status, first) = create_with_key(&env, "k-recurring", &body).await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = create_with_key(&env, "k-recurring", &body).await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], first["id"]);
    let listed: Value = env
        .get(&env.alpha, "/v1/scheduled?type=recurring")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    // The same key with another body, or first used by a one-time job, is a reuse.
    let other = recurring(json!({"cron": "0 10 * * *", "timezone": "UTC"}), "gpt-idem");
    let (status, error) = create_with_key(&env, "k-recurring", &other).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
    let once =
        json!({"scheduled_at": rfc3339_in(3_600_000), "request": chat_body("gpt-idem", "x")});
    let (status, _) = create_with_key(&env, "k-once", &once).await;
    assert_eq!(status, 201);
    let (status, error) = create_with_key(&env, "k-once", &body).await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["code"], "idempotency_key_reused");
}

#[tokio::test]
async fn the_scheduled_list_holds_one_time_and_recurring_jobs_newest_first() {
    let env = start(Setup::default()).await;
    let daily = json!({"cron": "0 9 * * *", "timezone": "Europe/Berlin"});
    let once = |n: u32| json!({"scheduled_at": rfc3339_in(3_600_000), "request": chat_body("gpt-list", &format!("once {n}"))});
    // Interleaved: once, recurring, once, recurring (paused), once.
    let mut ids = Vec::new();
    for step in 0..5 {
        let body = if step % 2 == 0 {
            once(step)
        } else {
            recurring(daily.clone(), "gpt-list")
        };
        ids.push(create(&env, &body).await["id"].as_str().unwrap().to_owned());
    }
    let (status, _) = action(&env, &ids[3], "pause").await;
    assert_eq!(status, 200);
    let list = |query: &'static str| {
        let env = &env;
        async move {
            let response = env.get(&env.alpha, &format!("/v1/scheduled{query}")).await;
            let status = response.status();
            let body: Value = response.json().await.unwrap();
            assert_eq!(status, 200, "{query}: {body}");
            body
        }
    };
    let listed_ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let all = list("").await;
    assert_eq!(listed_ids(&all), newest_first);
    // One-time jobs keep their shape; recurring ones say so.
    for job in all["data"].as_array().unwrap() {
        let recurring = job["id"] == ids[1] || job["id"] == ids[3];
        assert_eq!(job["type"] == "recurring", recurring, "{job}");
        assert_eq!(job.get("schedule").is_some(), recurring, "{job}");
        assert_eq!(job.get("scheduled_at").is_some(), !recurring, "{job}");
    }
    // Pages of two through both kinds, newest first, nothing twice or left out.
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page: Value = env
            .get(&env.alpha, &format!("/v1/scheduled?limit=2&after={after}"))
            .await
            .json()
            .await
            .unwrap();
        paged.extend(listed_ids(&page));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = page["last_id"].as_str().unwrap().to_owned();
    }
    assert_eq!(paged, newest_first);
    assert_eq!(
        listed_ids(&list("?type=recurring").await),
        vec![ids[3].clone(), ids[1].clone()]
    );
    assert_eq!(
        listed_ids(&list("?type=once").await),
        vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    assert_eq!(
        listed_ids(&list("?status=paused").await),
        vec![ids[3].clone()]
    );
    assert_eq!(
        listed_ids(&list("?status=pending").await),
        vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    // `cancelled` is both kinds' status.
    for id in [&ids[1], &ids[2]] {
        let response = env.delete(&env.alpha, &format!("/v1/scheduled/{id}")).await;
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        listed_ids(&list("?status=cancelled").await),
        vec![ids[2].clone(), ids[1].clone()]
    );
    for (query, param) in [("?status=queued", "status"), ("?type=weekly", "type")] {
        let response = env.get(&env.alpha, &format!("/v1/scheduled{query}")).await;
        assert_eq!(response.status(), 400);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param);
    }
    let beta: Value = env
        .get(&env.beta, "/v1/scheduled")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        beta["data"],
        json!([]),
        "another tenant's jobs are not listed"
    );
}

//! Async chat completions through `prism serve`: submit, poll, retries, cancel, tenancy,
//! idempotency, listing and retention.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Setup, chat_body, eventually, start};

const SOON: Duration = Duration::from_secs(10);

#[tokio::test]
async fn async_job_completes_with_the_upstream_completion_in_result() {
    let env = start(Setup::default()).await;
    let response = env
        .chat(&env.alpha, chat_body("gpt-async", "async hello"), true)
        .await;
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert!(id.starts_with("job_"));
    assert_eq!(job["job_id"], job["id"]);
    assert_eq!(job["object"], "async.job");
    assert_eq!(job["model"], "gpt-async");
    assert!(job["created_at"].is_i64());
    assert!(job["result"].is_null() && job["error"].is_null() && job["completed_at"].is_null());

    let done = env.wait_for(&env.alpha, id, &["completed"], SOON).await;
    assert_eq!(done["result"]["object"], "chat.completion");
    assert_eq!(
        done["result"]["choices"][0]["message"]["content"],
        "async hello"
    );
    assert!(done["started_at"].is_i64() && done["completed_at"].is_i64());
    assert!(done["error"].is_null());
    assert_eq!(env.mock.hits("gpt-async"), 1);
}

#[tokio::test]
async fn async_job_fails_with_the_upstream_error_without_retrying_a_400() {
    let env = start(Setup::default()).await;
    let id = env.submit(&env.alpha, "mock-400-job", "too long").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON).await;
    assert_eq!(job["error"]["code"], "context_length_exceeded");
    assert_eq!(job["error"]["type"], "invalid_request_error");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("maximum context length")
    );
    assert!(job["result"].is_null());
    assert_eq!(env.mock.hits("mock-400-job"), 1);
}

#[tokio::test]
async fn async_job_retries_after_429_honouring_retry_after() {
    let env = start(Setup::default()).await;
    let started = Instant::now();
    let id = env.submit(&env.alpha, "mock-429-2-job", "patience").await;
    let job = env
        .wait_for(&env.alpha, &id, &["completed", "failed"], SOON * 2)
        .await;
    assert_eq!(job["status"], "completed");
    assert_eq!(
        env.mock.hits("mock-429-2-job"),
        3,
        "two 429s then one success"
    );
    // Two waits of `retry-after: 1`; generous bound below, no upper bound on a shared machine.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn insufficient_quota_fails_at_once_without_retry() {
    let env = start(Setup::default()).await;
    let id = env.submit(&env.alpha, "mock-quota-job", "x").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON).await;
    assert_eq!(job["error"]["code"], "insufficient_quota");
    assert_eq!(env.mock.hits("mock-quota-job"), 1);
}

#[tokio::test]
async fn server_errors_are_retried_until_attempts_run_out() {
    let env = start(Setup {
        workers: "max_attempts = 3",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "mock-500-10-job", "x").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON * 2).await;
    assert_eq!(job["error"]["type"], "server_error");
    assert_eq!(env.mock.hits("mock-500-10-job"), 3);

    let id = env.submit(&env.alpha, "mock-500-2-recovers", "x").await;
    env.wait_for(&env.alpha, &id, &["completed"], SOON * 2)
        .await;
    assert_eq!(env.mock.hits("mock-500-2-recovers"), 3);
}

/// The bound on a job whose upstream call never answers: the attempt timeout cuts the call (the
/// one deadline over connect, head and body), and the job is retried, so it ends within
/// `max_attempts` attempt timeouts plus their backoff. Its worker never hangs past that, so no
/// message is kept hidden beside a stuck call.
#[tokio::test]
async fn a_job_whose_upstream_call_hangs_is_cut_by_the_attempt_timeout_and_completes_once() {
    let env = start(Setup {
        workers: "upstream_timeout = \"1s\"",
        ..Setup::default()
    })
    .await;
    let model = "mock-hangfirst-1-job";
    let id = env.submit(&env.alpha, model, "x").await;
    let job = env
        .wait_for(&env.alpha, &id, &["completed", "failed"], SOON)
        .await;
    assert_eq!(job["status"], "completed", "{job}");
    assert_eq!(env.mock.hits(model), 2, "the hung call and one retry");
    eventually(SOON, "the hung call aborted", || async {
        env.mock.aborted(model) == 1
    })
    .await;
}

#[tokio::test]
async fn hanging_upstream_times_out_per_attempt_and_fails_the_job() {
    let env = start(Setup {
        workers: "max_attempts = 2\nupstream_timeout = \"1s\"",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "mock-hang-timeout", "x").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON * 2).await;
    assert_eq!(job["error"]["code"], "upstream_timeout");
    assert_eq!(env.mock.hits("mock-hang-timeout"), 2);
}

#[tokio::test]
async fn invalid_upstream_json_fails_the_job_with_a_clear_code() {
    let env = start(Setup {
        workers: "max_attempts = 2",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "mock-bad-json-job", "x").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON * 2).await;
    assert_eq!(job["error"]["code"], "invalid_upstream_response");
    let id = env.submit(&env.alpha, "mock-truncated-job", "x").await;
    let job = env.wait_for(&env.alpha, &id, &["failed"], SOON * 2).await;
    assert_eq!(job["error"]["code"], "invalid_upstream_response");
}

#[tokio::test]
async fn streaming_with_async_is_a_400_streaming_unsupported() {
    let env = start(Setup::default()).await;
    let mut body = chat_body("gpt-x", "x");
    body["stream"] = json!(true);
    let response = env.chat(&env.alpha, body, true).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["code"], "streaming_unsupported");
    assert_eq!(error["error"]["param"], "stream");
}

#[tokio::test]
async fn cancel_pending_job_means_the_upstream_is_never_called() {
    let env = start(Setup {
        workers: "concurrency = 1",
        ..Setup::default()
    })
    .await;
    let blocker = env.submit(&env.alpha, "mock-hang-blocker", "x").await;
    env.wait_for(&env.alpha, &blocker, &["running"], SOON).await;
    let waiting = env.submit(&env.alpha, "gpt-never", "x").await;

    let response = env
        .delete(&env.alpha, &format!("/v1/async/{waiting}"))
        .await;
    assert_eq!(response.status(), 200);
    let job: Value = response.json().await.unwrap();
    assert_eq!(job["status"], "cancelled");
    assert!(job["completed_at"].is_i64());

    // Free the only worker; the cancelled job must still never reach the upstream.
    env.delete(&env.alpha, &format!("/v1/async/{blocker}"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(env.mock.hits("gpt-never"), 0);
    assert_eq!(env.job(&env.alpha, &waiting).await["status"], "cancelled");
}

#[tokio::test]
async fn cancel_running_job_aborts_the_upstream_call() {
    let env = start(Setup {
        workers: "upstream_timeout = \"60s\"",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "mock-hang-cancel", "x").await;
    env.wait_for(&env.alpha, &id, &["running"], SOON).await;
    eventually(SOON, "upstream call in flight", || async {
        env.mock.hits("mock-hang-cancel") == 1
    })
    .await;

    let response = env.delete(&env.alpha, &format!("/v1/async/{id}")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    eventually(
        Duration::from_secs(5),
        "upstream request aborted",
        || async { env.mock.aborted("mock-hang-cancel") == 1 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let job = env.job(&env.alpha, &id).await;
    assert_eq!(job["status"], "cancelled");
    assert!(job["result"].is_null());
    assert_eq!(
        env.mock.hits("mock-hang-cancel"),
        1,
        "no retry after a cancel"
    );
}

#[tokio::test]
async fn cancel_returns_409_when_job_already_completed() {
    let env = start(Setup::default()).await;
    let id = env.submit(&env.alpha, "gpt-done", "x").await;
    env.wait_for(&env.alpha, &id, &["completed"], SOON).await;
    let response = env.delete(&env.alpha, &format!("/v1/async/{id}")).await;
    assert_eq!(response.status(), 409);
    assert_eq!(response.headers()["x-should-retry"], "false");
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed")
    );

    let failed = env.submit(&env.alpha, "mock-400-done", "x").await;
    env.wait_for(&env.alpha, &failed, &["failed"], SOON).await;
    let response = env.delete(&env.alpha, &format!("/v1/async/{failed}")).await;
    assert_eq!(response.status(), 409);
}

#[tokio::test]
async fn cancelling_a_cancelled_job_answers_200_again() {
    let env = start(Setup {
        workers: "concurrency = 1",
        ..Setup::default()
    })
    .await;
    let blocker = env.submit(&env.alpha, "mock-hang-b2", "x").await;
    env.wait_for(&env.alpha, &blocker, &["running"], SOON).await;
    let id = env.submit(&env.alpha, "gpt-twice", "x").await;
    for _ in 0..2 {
        let response = env.delete(&env.alpha, &format!("/v1/async/{id}")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.json::<Value>().await.unwrap()["status"],
            "cancelled"
        );
    }
}

#[tokio::test]
async fn another_tenants_job_is_a_404_like_an_unknown_one() {
    let env = start(Setup::default()).await;
    let id = env.submit(&env.alpha, "gpt-private", "secret").await;
    env.wait_for(&env.alpha, &id, &["completed"], SOON).await;

    let response = env.get(&env.beta, &format!("/v1/async/{id}")).await;
    assert_eq!(response.status(), 404);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["type"], "invalid_request_error");
    assert_eq!(
        env.delete(&env.beta, &format!("/v1/async/{id}"))
            .await
            .status(),
        404
    );
    let unknown = "job_01m8fjznbgbn54wfrbn0pv7xk8";
    assert_eq!(
        env.get(&env.alpha, &format!("/v1/async/{unknown}"))
            .await
            .status(),
        404
    );
    assert_eq!(
        env.get(&env.alpha, "/v1/async/not-an-id").await.status(),
        404
    );

    let list: Value = env.get(&env.beta, "/v1/async").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    assert_eq!(env.job(&env.alpha, &id).await["status"], "completed");
}

#[tokio::test]
async fn idempotency_key_replays_the_original_job_and_refuses_another_body() {
    let env = start(Setup::default()).await;
    let send = |content: &'static str, key: &'static str, api_key: String| {
        let env = &env;
        async move {
            env.http
                .post(env.url("/v1/chat/completions"))
                .bearer_auth(api_key)
                .header("x-prism-async", "true")
                .header("idempotency-key", key)
                .json(&chat_body("gpt-idem", content))
                .send()
                .await
                .unwrap()
        }
    };
    let first = send("same", "k-1", env.alpha.clone()).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = send("same", "k-1", env.alpha.clone()).await;
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    let other = send("different", "k-1", env.alpha.clone()).await;
    assert_eq!(other.status(), 400);
    let error: Value = other.json().await.unwrap();
    assert_eq!(error["error"]["code"], "idempotency_key_reused");

    // Keys are scoped to the tenant: the same key from beta is a new job.
    let beta: Value = send("same", "k-1", env.beta.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(beta["id"], first["id"]);

    env.wait_for(
        &env.alpha,
        first["id"].as_str().unwrap(),
        &["completed"],
        SOON,
    )
    .await;
    eventually(SOON * 3, "beta's job runs", || async {
        env.mock.hits("gpt-idem") == 2
    })
    .await;
}

#[tokio::test]
async fn list_pages_newest_first_with_cursors_and_a_status_filter() {
    let env = start(Setup::default()).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(env.submit(&env.alpha, "gpt-list", &format!("n{i}")).await);
    }
    let failed = env.submit(&env.alpha, "mock-400-list", "x").await;
    for id in &ids {
        env.wait_for(&env.alpha, id, &["completed"], SOON).await;
    }
    env.wait_for(&env.alpha, &failed, &["failed"], SOON).await;

    let mut newest_first: Vec<String> = ids.clone();
    newest_first.push(failed.clone());
    newest_first.reverse();

    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let path = match &after {
            Some(a) => format!("/v1/async?limit=4&after={a}"),
            None => "/v1/async?limit=4".to_owned(),
        };
        let page: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
        assert_eq!(page["object"], "list");
        let data = page["data"].as_array().unwrap();
        pages.push((data.len(), page["has_more"].as_bool().unwrap()));
        assert_eq!(page["first_id"], data[0]["id"]);
        assert_eq!(page["last_id"], data[data.len() - 1]["id"]);
        seen.extend(data.iter().map(|j| j["id"].as_str().unwrap().to_owned()));
        if !page["has_more"].as_bool().unwrap() {
            break;
        }
        after = Some(page["last_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(pages, vec![(4, true), (2, false)]);
    assert_eq!(seen, newest_first);

    let only_failed: Value = env
        .get(&env.alpha, "/v1/async?status=failed")
        .await
        .json()
        .await
        .unwrap();
    let data = only_failed["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["id"], failed.as_str());

    let bad = env.get(&env.alpha, "/v1/async?limit=0").await;
    assert_eq!(bad.status(), 400);
    let bad = env.get(&env.alpha, "/v1/async?status=queued").await;
    assert_eq!(bad.status(), 400);
}

#[tokio::test]
async fn finished_jobs_are_gone_after_their_retention() {
    let env = start(Setup {
        jobs: "retention = \"2s\"",
        ..Setup::default()
    })
    .await;
    let id = env.submit(&env.alpha, "gpt-brief", "x").await;
    env.wait_for(&env.alpha, &id, &["completed"], SOON).await;
    eventually(SOON, "job expired", || async {
        env.get(&env.alpha, &format!("/v1/async/{id}"))
            .await
            .status()
            == 404
    })
    .await;
    let list: Value = env.get(&env.alpha, "/v1/async").await.json().await.unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
}

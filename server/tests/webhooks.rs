//! Webhooks end to end over real HTTP: a loopback receiver gets exactly one signed event per
//! finished job or batch, verified with the official SDK's `webhooks.unwrap`; retries keep the
//! webhook-id; a kill -9 between a batch turning terminal and its delivery still delivers; the
//! SSRF refusals. Runs on both backends (`PRISM_TEST_BACKEND`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::receiver::{Answer, Receiver, sdk_unwrap};
use support::{Env, Setup, chat_batch_input, eventually, start};

const SOON: Duration = Duration::from_secs(60);

/// Loopback targets allowed (the receiver is local), quick retries.
const LOCAL: &str = "allow_private_targets = true\nretry_base = \"200ms\"";

async fn create_endpoint(env: &Env, key: &str, url: &str, events: Value) -> reqwest::Response {
    env.post(
        key,
        "/v1/webhook_endpoints",
        &json!({"url": url, "events": events}),
    )
    .await
}

/// Creates alpha's endpoint for `receiver`; returns (id, secret).
async fn endpoint_for(env: &Env, receiver: &Receiver) -> (String, String) {
    let response = create_endpoint(env, &env.alpha, &receiver.url, json!([])).await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["object"], "webhook_endpoint");
    assert_eq!(created["status"], "enabled");
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    (created["id"].as_str().unwrap().to_owned(), secret)
}

/// Waits until `subject` has produced at least one request, then gives a moment for a
/// duplicate to show and returns them all.
async fn events_about(receiver: &Receiver, subject: &str) -> Vec<support::receiver::Received> {
    eventually(SOON, &format!("a webhook about {subject}"), || async {
        !receiver.about(subject).is_empty()
    })
    .await;
    receiver.about(subject)
}

fn assert_one_event(
    received: &[support::receiver::Received],
    secret: &str,
    kind: &str,
    subject: &str,
) {
    assert_eq!(
        received.len(),
        1,
        "exactly one event about {subject}: {:?}",
        received
            .iter()
            .map(|r| (&r.headers, &r.body))
            .collect::<Vec<_>>()
    );
    let event = sdk_unwrap(&received[0], secret);
    assert_eq!(event["type"], kind);
    assert_eq!(event["object"], "event");
    assert_eq!(event["data"]["id"], subject);
    assert_eq!(event["id"], received[0].header("webhook-id").unwrap());
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert!(event["created_at"].is_i64());
    let body = received[0].json();
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["created_at", "data", "id", "object", "type"],
        "ids only: {body}"
    );
}

// Multi-threaded: the receiver runs on the test's runtime and must answer while a test
// thread waits on the SDK's process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_jobs_and_batches_each_send_one_event_the_sdk_verifies() {
    let env = start(Setup {
        webhooks: LOCAL,
        batches: "completion_window = \"8s\"\nlines_per_chunk = 2\ncheckpoint_every = \"1s\"",
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    let (_, secret) = endpoint_for(&env, &receiver).await;

    let completed_job = env.submit(&env.alpha, "mock-echo", "hello").await;
    let failed_scheduled = env.schedule(&env.alpha, "mock-400-hook", "x", 0).await;
    let completed_batch = env
        .start_batch(&chat_batch_input("ok", "mock-echo", 3))
        .await;
    let cancelled_batch = env
        .start_batch(&chat_batch_input("c", "mock-slow-2000-hook", 4))
        .await;
    let expired_batch = env
        .start_batch(&chat_batch_input("e", "mock-hang", 2))
        .await;
    env.wait_for_batch(&cancelled_batch, &["in_progress"], SOON)
        .await;
    let response = env
        .post(
            &env.alpha,
            &format!("/v1/batches/{cancelled_batch}/cancel"),
            &json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);

    for (subject, kind) in [
        (&completed_job, "async.job.completed"),
        (&failed_scheduled, "scheduled.job.failed"),
        (&completed_batch, "batch.completed"),
        (&cancelled_batch, "batch.cancelled"),
        (&expired_batch, "batch.expired"),
    ] {
        let received = events_about(&receiver, subject).await;
        assert_one_event(&received, &secret, kind, subject);
    }
    // Nothing else arrived later (a duplicate would have had the whole run to show).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let all: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| format!("{} {}", r.json()["type"], r.json()["data"]["id"]))
        .collect();
    assert_eq!(all.len(), 5, "{all:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_same_webhook_id_until_it_answers_2xx() {
    let env = start(Setup {
        webhooks: LOCAL,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::start(vec![
        Answer::Status(500),
        Answer::Status(500),
        Answer::Status(500),
    ])
    .await;
    let (endpoint, secret) = endpoint_for(&env, &receiver).await;
    let job = env.submit(&env.alpha, "mock-echo", "retry me").await;
    eventually(SOON, "four attempts", || async {
        receiver.about(&job).len() >= 4
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let received = receiver.about(&job);
    assert_eq!(received.len(), 4, "three 500s then one 200, no more");
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r.header("webhook-id").unwrap())
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(
        sdk_unwrap(&received[3], &secret)["type"],
        "async.job.completed"
    );

    let deliveries: Value = env
        .get(
            &env.alpha,
            &format!("/v1/webhook_endpoints/{endpoint}/deliveries"),
        )
        .await
        .json()
        .await
        .unwrap();
    let statuses: Vec<i64> = deliveries["data"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .map(|d| d["status_code"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, [500, 500, 500, 200]);
    let endpoint_now: Value = env
        .get(&env.alpha, &format!("/v1/webhook_endpoints/{endpoint}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(endpoint_now["status"], "enabled");
    assert!(
        endpoint_now.get("secret").is_none(),
        "secret only on create"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_410_disables_its_endpoint_at_once_and_gets_nothing_more() {
    let env = start(Setup {
        webhooks: LOCAL,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::start(vec![Answer::Status(410)]).await;
    let (endpoint, _) = endpoint_for(&env, &receiver).await;
    let gone = env.submit(&env.alpha, "mock-echo", "gone").await;
    let path = format!("/v1/webhook_endpoints/{endpoint}");
    eventually(SOON, "the endpoint disabled", || async {
        let e: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
        e["status"] == "disabled"
    })
    .await;
    let disabled: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
    assert!(disabled["disabled_at"].is_i64(), "{disabled}");
    let after = env.submit(&env.alpha, "mock-echo", "after").await;
    eventually(SOON, "the second job done", || async {
        let job: Value = env
            .get(&env.alpha, &format!("/v1/async/{after}"))
            .await
            .json()
            .await
            .unwrap();
        job["status"] == "completed"
    })
    .await;
    // Retries come 200 ms apart here: a second attempt would have arrived by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(receiver.about(&gone).len(), 1, "no retry after a 410");
    assert!(
        receiver.about(&after).is_empty(),
        "a disabled endpoint gets no new event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_between_a_batch_finishing_and_its_delivery_still_delivers_after_restart() {
    let mut env = start(Setup {
        webhooks: LOCAL,
        ..Setup::default()
    })
    .await;
    // The first attempt hangs: the batch is terminal, its event recorded, not yet delivered.
    let receiver = Receiver::start(vec![Answer::Hang]).await;
    let (_, secret) = endpoint_for(&env, &receiver).await;
    let batch = env
        .start_batch(&chat_batch_input("k", "mock-echo", 2))
        .await;
    env.wait_for_batch(&batch, &["completed"], SOON).await;
    events_about(&receiver, &batch).await;
    env.kill_server().await;
    env.start_server().await;
    eventually(SOON, "the delivery after restart", || async {
        receiver.about(&batch).len() >= 2
    })
    .await;
    let received = receiver.about(&batch);
    assert_eq!(
        received[0].header("webhook-id"),
        received[1].header("webhook-id")
    );
    assert_eq!(sdk_unwrap(&received[1], &secret)["type"], "batch.completed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_targets_are_refused_and_another_tenants_endpoint_is_not_found() {
    let env = start(Setup::default()).await;
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://localhost/x",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.1/x",
        "https://[::1]/x",
        "https://user:pw@hooks.example.com/x",
        "ftp://hooks.example.com/x",
    ] {
        let response = create_endpoint(&env, &env.alpha, url, json!([])).await;
        assert_eq!(response.status(), 400, "{url}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], "url", "{url}");
    }
    let response = create_endpoint(
        &env,
        &env.alpha,
        "https://8.8.8.8/x",
        json!(["batch.nonsense"]),
    )
    .await;
    assert_eq!(response.status(), 400, "unknown event type");

    // An endpoint created while private targets were allowed is refused at delivery once they
    // are not (what a DNS answer changing to a private address meets).
    let mut env = start(Setup {
        webhooks: LOCAL,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    let (endpoint, _) = endpoint_for(&env, &receiver).await;
    let missing = env
        .get(&env.beta, &format!("/v1/webhook_endpoints/{endpoint}"))
        .await;
    assert_eq!(missing.status(), 404, "another tenant's endpoint");
    let missing = env
        .delete(&env.beta, &format!("/v1/webhook_endpoints/{endpoint}"))
        .await;
    assert_eq!(missing.status(), 404);
    env.kill_server().await;
    let config = std::fs::read_to_string(&env.config).unwrap();
    std::fs::write(
        &env.config,
        config.replace(
            "allow_private_targets = true",
            "allow_private_targets = false",
        ),
    )
    .unwrap();
    env.start_server().await;
    let job = env.submit(&env.alpha, "mock-echo", "x").await;
    let path = format!("/v1/webhook_endpoints/{endpoint}/deliveries");
    eventually(SOON, "a refused attempt", || async {
        let list: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
        list["data"].as_array().is_some_and(|d| !d.is_empty())
    })
    .await;
    let list: Value = env.get(&env.alpha, &path).await.json().await.unwrap();
    let attempt = &list["data"][0];
    assert_eq!(attempt["event_id"], format!("evt_{job}"));
    assert!(attempt["status_code"].is_null());
    // Refused by the target rules before any connection (plain http is the first rule the
    // loopback receiver's URL fails once private targets are off).
    let error = attempt["error"].as_str().unwrap();
    assert!(
        error.contains("https") || error.contains("private"),
        "{attempt}"
    );
    assert!(receiver.received().is_empty(), "nothing reached the target");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_signs_with_both_secrets_and_test_and_redeliver_reach_the_endpoint() {
    let env = start(Setup {
        webhooks: LOCAL,
        ..Setup::default()
    })
    .await;
    let receiver = Receiver::start(vec![]).await;
    let (endpoint, old_secret) = endpoint_for(&env, &receiver).await;
    let rotated: Value = env
        .post(
            &env.alpha,
            &format!("/v1/webhook_endpoints/{endpoint}/rotate_secret"),
            &json!({}),
        )
        .await
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(new_secret, old_secret);
    let test = env
        .post(
            &env.alpha,
            &format!("/v1/webhook_endpoints/{endpoint}/test"),
            &json!({}),
        )
        .await;
    assert_eq!(test.status(), 202);
    let test: Value = test.json().await.unwrap();
    eventually(SOON, "the test event", || async {
        !receiver.received().is_empty()
    })
    .await;
    let first = receiver.received()[0].clone();
    assert_eq!(first.header("webhook-id").unwrap(), test["id"]);
    assert_eq!(
        first
            .header("webhook-signature")
            .unwrap()
            .split(' ')
            .count(),
        2,
        "both secrets sign during the overlap"
    );
    for secret in [&old_secret, &new_secret] {
        sdk_unwrap(&first, secret);
    }
    // A fresh connection: the server closes idle keep-alive connections after its header read
    // timeout, and a reused one can be closed under the request.
    let redeliver = reqwest::Client::new()
        .post(env.url(&format!(
            "/v1/webhook_endpoints/{endpoint}/deliveries/{}/redeliver",
            test["id"].as_str().unwrap()
        )))
        .bearer_auth(&env.alpha)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(redeliver.status(), 202);
    eventually(SOON, "the redelivery", || async {
        receiver.received().len() >= 2
    })
    .await;
    assert_eq!(
        receiver.received()[1].header("webhook-id"),
        first.header("webhook-id")
    );
    let listed: Value = env
        .get(&env.alpha, "/v1/webhook_endpoints")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], endpoint);
    let deleted = env
        .delete(&env.alpha, &format!("/v1/webhook_endpoints/{endpoint}"))
        .await;
    assert_eq!(deleted.status(), 200);
}

//! The AWS backend's delivery semantics on the emulator (`AWS_ENDPOINT_URL`, started by
//! scripts/test.sh): redeliveries, dead letters, and values too large for a DynamoDB item.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use prism_app::aws::{AwsApp, ConfigSource, ProviderKeys, connect_aws};
use prism_app::config::Config;
use prism_aws::provision;
use prism_core::batches::service::create_batch;
use prism_core::clock::format_rfc3339;
use prism_core::consumer::consume_dead_letters;
use prism_core::dispatch::{QueueAction, handle_delivery};
use prism_core::files::FilePurpose;
use prism_core::files::service::{register_upload, store_upload};
use prism_core::jobs::service::{cancel_job, submit_async_job, submit_scheduled_job};
use prism_core::ports::{WorkItem, WorkQueue};
use prism_core::reconcile::reconcile;
use prism_core::{Clock, JobKind, JobStatus, Stage, TenantId};
use prism_testkit::schedule_pump::EmulatorSchedulePump;
use prism_testkit::{ManualClock, MockUpstream, TestClock, spawn_mock_upstream};
use tokio_util::sync::CancellationToken;

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn app_with_mock() -> (AwsApp, MockUpstream) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run scripts/test.sh (it starts the emulator), or start `.venv/bin/moto_server -H 127.0.0.1 -p PORT` and export AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    );
    let mock = spawn_mock_upstream("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let prefix = format!(
        "app-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let config = Config::parse(
        &format!(
            "[[providers]]\nname = \"mock\"\nbase_url = \"{}\"\nmodels = [\"*\"]\n\n\
             [batches]\nlines_per_chunk = 10\ncheckpoint_lines = 4\n",
            mock.base_url()
        ),
        "test",
    )
    .unwrap();
    let vars = settings.to_env();
    let env = move |name: &str| {
        vars.iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    };
    let app = connect_aws(
        ConfigSource::Loaded(Box::new(config)),
        env,
        Duration::ZERO,
        ProviderKeys::Fetch,
    )
    .await
    .unwrap();
    (app, mock)
}

fn alpha() -> TenantId {
    TenantId::parse("alpha").unwrap()
}

fn body(model: &str, content: &str) -> Bytes {
    let json =
        serde_json::json!({"model": model, "messages": [{"role": "user", "content": content}]});
    Bytes::from(json.to_string())
}

async fn receive_one(queue: &dyn WorkQueue, visibility: Duration) -> prism_core::ports::Delivery {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(d) = queue.receive(1, visibility).await.unwrap().pop() {
            return d;
        }
        assert!(Instant::now() < deadline, "no message arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_redelivered_message_does_not_call_the_upstream_twice() {
    let (app, mock) = app_with_mock().await;
    let deps = &app.deps;
    let job = submit_async_job(
        deps,
        &alpha(),
        prism_core::ApiEndpoint::ChatCompletions,
        body("mock-slow-1500-dup", "once"),
        None,
    )
    .await
    .unwrap()
    .job;
    let first = receive_one(deps.queue.as_ref(), Duration::from_secs(30)).await;
    // A duplicate of the same trigger, as SQS may deliver at any time.
    deps.queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::ZERO)
        .await
        .unwrap();
    let running = tokio::spawn({
        let deps = deps.clone();
        async move { handle_delivery(&deps, &first, None).await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let duplicate = receive_one(deps.queue.as_ref(), Duration::from_secs(30)).await;
    match handle_delivery(deps, &duplicate, None).await {
        QueueAction::RetryAfter(_) => {}
        QueueAction::Ack => panic!("a duplicate under a live lease must not be acknowledged"),
    }
    assert_eq!(running.await.unwrap(), QueueAction::Ack);
    assert_eq!(
        handle_delivery(deps, &duplicate, None).await,
        QueueAction::Ack,
        "now terminal"
    );
    let done = deps
        .jobs
        .get(&alpha(), &job.id, deps.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(mock.hits("mock-slow-1500-dup"), 1);
}

#[tokio::test]
async fn a_message_that_keeps_failing_is_dead_lettered_and_its_job_fails() {
    let (app, mock) = app_with_mock().await;
    let deps = &app.deps;
    let job = submit_async_job(
        deps,
        &alpha(),
        prism_core::ApiEndpoint::ChatCompletions,
        body("gpt-poison", "x"),
        None,
    )
    .await
    .unwrap()
    .job;
    // Every delivery fails without an acknowledgement (a worker that crashes each time).
    for _ in 0..prism_aws::MAX_RECEIVE_COUNT {
        receive_one(deps.queue.as_ref(), Duration::ZERO).await;
    }
    assert!(
        deps.queue
            .receive(10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "moved to the DLQ"
    );

    let shutdown = CancellationToken::new();
    let consumer = tokio::spawn({
        let (deps, dlq, shutdown) = (
            deps.clone(),
            app.backend.dead_letters.get(Stage::Jobs).clone(),
            shutdown.clone(),
        );
        async move { consume_dead_letters(&deps, &dlq, Duration::from_secs(30), &shutdown).await }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let failed = loop {
        let current = deps
            .jobs
            .get(&alpha(), &job.id, deps.clock.now())
            .await
            .unwrap()
            .unwrap();
        if current.status == JobStatus::Failed {
            break current;
        }
        assert!(Instant::now() < deadline, "job still {:?}", current.status);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    shutdown.cancel();
    consumer.await.unwrap();
    assert_eq!(
        failed.error.unwrap().code.as_deref(),
        Some("processing_failed")
    );
    assert_eq!(mock.hits("gpt-poison"), 0);
}

#[tokio::test]
async fn a_one_megabyte_prompt_and_its_result_round_trip_through_s3() {
    let (app, mock) = app_with_mock().await;
    let deps = &app.deps;
    let prompt = "word ".repeat(200_000); // 1 MB: far over the 32 KB item threshold
    let job = submit_async_job(
        deps,
        &alpha(),
        prism_core::ApiEndpoint::ChatCompletions,
        body("gpt-large", &prompt),
        None,
    )
    .await
    .unwrap()
    .job;
    let delivery = receive_one(deps.queue.as_ref(), Duration::from_secs(60)).await;
    assert_eq!(
        handle_delivery(deps, &delivery, None).await,
        QueueAction::Ack
    );
    let done = deps
        .jobs
        .get(&alpha(), &job.id, deps.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    let result: serde_json::Value = serde_json::from_str(done.result.as_deref().unwrap()).unwrap();
    assert_eq!(result["choices"][0]["message"]["content"], prompt.as_str());
    assert_eq!(mock.hits("gpt-large"), 1);
}

fn scheduled_body(due: prism_core::Timestamp, model: &str) -> Vec<u8> {
    serde_json::json!({
        "scheduled_at": format_rfc3339(due),
        "request": {"model": model, "messages": [{"role": "user", "content": "later"}]},
    })
    .to_string()
    .into_bytes()
}

/// The app's dependencies on a manual clock: the scheduler and queues keep real time, so only
/// what Prism itself decides by the clock (lead times, the due check) moves with it.
fn on_manual_clock(app: &AwsApp) -> (prism_core::deps::Deps, ManualClock) {
    let clock = ManualClock::new();
    let mut deps = app.deps.clone();
    deps.clock = std::sync::Arc::new(clock.clone());
    (deps, clock)
}

#[tokio::test]
async fn a_job_due_beyond_a_queue_delay_runs_when_its_eventbridge_schedule_fires() {
    let (app, mock) = app_with_mock().await;
    let (deps, clock) = on_manual_clock(&app);
    let due = clock.now().plus(Duration::from_secs(20 * 60));
    let job = submit_scheduled_job(
        &deps,
        &alpha(),
        &scheduled_body(due, "gpt-eventbridge"),
        None,
    )
    .await
    .unwrap()
    .job;
    let target = &app.backend.settings.schedules;
    let pump = EmulatorSchedulePump::connect(&target.group).await;
    assert_eq!(pump.names().await, vec![job.id.to_string()]);
    let schedule = pump.schedule(job.id.as_str()).await;
    assert_eq!(
        schedule.schedule_expression(),
        Some(prism_aws::at_expression(due).as_str())
    );
    assert_eq!(schedule.schedule_expression_timezone(), Some("UTC"));
    assert_eq!(
        schedule.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    let schedule_target = schedule.target().unwrap();
    assert_eq!(schedule_target.arn(), target.queue_arn);
    assert_eq!(schedule_target.role_arn(), target.role_arn);
    assert_eq!(
        schedule_target.dead_letter_config().and_then(|d| d.arn()),
        Some(target.dead_letter_arn.as_str())
    );
    assert!(schedule_target.retry_policy().is_some());
    assert!(
        deps.queue
            .receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "no message before the schedule fires"
    );
    assert_eq!(pump.fire_due(clock.now()).await, 0, "not due yet");

    clock.advance(Duration::from_secs(21 * 60)).await;
    assert_eq!(pump.fire_due(clock.now()).await, 1);
    let delivery = receive_one(deps.queue.as_ref(), Duration::from_secs(30)).await;
    assert_eq!(
        handle_delivery(&deps, &delivery, None).await,
        QueueAction::Ack
    );
    let done = deps
        .jobs
        .get(&alpha(), &job.id, clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert!(done.started_at.unwrap() >= due);
    assert_eq!(mock.hits("gpt-eventbridge"), 1);
    assert!(pump.names().await.is_empty(), "deleted after completion");
}

#[tokio::test]
async fn cancelling_a_far_scheduled_job_deletes_its_schedule() {
    let (app, mock) = app_with_mock().await;
    let (deps, clock) = on_manual_clock(&app);
    let due = clock.now().plus(Duration::from_secs(2 * 3600));
    let job = submit_scheduled_job(
        &deps,
        &alpha(),
        &scheduled_body(due, "gpt-cancel-far"),
        None,
    )
    .await
    .unwrap()
    .job;
    let pump = EmulatorSchedulePump::connect(&app.backend.settings.schedules.group).await;
    assert_eq!(pump.names().await.len(), 1);
    let cancelled = cancel_job(&deps, &alpha(), JobKind::Scheduled, job.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(pump.names().await.is_empty());
    clock.advance(Duration::from_secs(3 * 3600)).await;
    assert_eq!(pump.fire_due(clock.now()).await, 0);
    assert_eq!(mock.hits("gpt-cancel-far"), 0);
}

#[tokio::test]
async fn an_early_delivery_is_dropped_and_the_reconciler_runs_the_job_once_due() {
    let (app, mock) = app_with_mock().await;
    let (deps, clock) = on_manual_clock(&app);
    let due = clock.now().plus(Duration::from_secs(3600));
    let job = submit_scheduled_job(&deps, &alpha(), &scheduled_body(due, "gpt-early"), None)
        .await
        .unwrap()
        .job;
    // A stray trigger an hour early (a manual send, a lost-and-found message).
    deps.queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::ZERO)
        .await
        .unwrap();
    let early = receive_one(deps.queue.as_ref(), Duration::from_secs(30)).await;
    assert_eq!(handle_delivery(&deps, &early, None).await, QueueAction::Ack);
    let waiting = deps
        .jobs
        .get(&alpha(), &job.id, clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((waiting.status, waiting.attempts), (JobStatus::Pending, 0));
    assert_eq!(mock.hits("gpt-early"), 0);

    // Its schedule is lost too: once due (and then stranded), the reconciler triggers it.
    clock
        .advance(
            Duration::from_secs(3600) + deps.work_policy.stranded_after + Duration::from_secs(1),
        )
        .await;
    let report = reconcile(&deps).await.unwrap();
    assert_eq!(report.retriggered, 1, "{report:?}");
    let delivery = receive_one(deps.queue.as_ref(), Duration::from_secs(30)).await;
    assert_eq!(
        handle_delivery(&deps, &delivery, None).await,
        QueueAction::Ack
    );
    let done = deps
        .jobs
        .get(&alpha(), &job.id, clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(mock.hits("gpt-early"), 1);
}

/// Every message waiting on `queue` right now (short polls until one comes back empty).
async fn all_waiting(queue: &dyn WorkQueue) -> Vec<prism_core::ports::Delivery> {
    let mut all = Vec::new();
    loop {
        let got = queue.receive(10, Duration::from_secs(60)).await.unwrap();
        if got.is_empty() {
            return all;
        }
        all.extend(got);
    }
}

#[tokio::test]
async fn duplicate_chunk_and_finalize_messages_change_nothing_and_finalize_once() {
    let (app, mock) = app_with_mock().await;
    let deps = &app.deps;
    let text: String = (0..20)
        .map(|i| {
            format!(
                "{{\"custom_id\":\"d{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"gpt-dup\",\"messages\":[{{\"role\":\"user\",\"content\":\"{i}\"}}]}}}}\n"
            )
        })
        .collect();
    let body = futures::stream::once(async move { Ok(Bytes::from(text)) }).boxed();
    let pending = store_upload(deps, &alpha(), body).await.unwrap();
    let file = register_upload(deps, pending, "dup.jsonl".into(), FilePurpose::Batch, None)
        .await
        .unwrap();
    let request = format!(
        r#"{{"input_file_id":"{}","endpoint":"/v1/chat/completions","completion_window":"24h"}}"#,
        file.id
    );
    let batch = create_batch(deps, &alpha(), request.as_bytes())
        .await
        .unwrap()
        .batch_ref();
    let backend = &app.backend;
    let run = |deliveries: Vec<prism_core::ports::Delivery>, stage: Stage| async move {
        for delivery in deliveries {
            let action = handle_delivery(deps, &delivery, None).await;
            assert_eq!(action, QueueAction::Ack, "{stage:?}: {:?}", delivery.item);
            let q = backend.queues.get(stage);
            q.ack(&delivery.receipt).await.unwrap();
        }
    };
    run(
        all_waiting(backend.queues.get(Stage::Plan)).await,
        Stage::Plan,
    )
    .await;
    let chunks = all_waiting(backend.queues.get(Stage::Chunks)).await;
    assert_eq!(chunks.len(), 2);
    // SQS may deliver any message twice: send each chunk message again.
    for delivery in &chunks {
        deps.queue
            .enqueue(&delivery.item, Duration::ZERO)
            .await
            .unwrap();
    }
    run(chunks, Stage::Chunks).await;
    run(
        all_waiting(backend.queues.get(Stage::Chunks)).await,
        Stage::Chunks,
    )
    .await;
    let finals = all_waiting(backend.queues.get(Stage::Finalize)).await;
    assert!(!finals.is_empty());
    // And the finalize message twice more.
    for _ in 0..2 {
        deps.queue
            .enqueue(&WorkItem::FinalizeBatch(batch.clone()), Duration::ZERO)
            .await
            .unwrap();
    }
    run(finals, Stage::Finalize).await;
    let first = deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.status, prism_core::batches::BatchStatus::Completed);
    run(
        all_waiting(backend.queues.get(Stage::Finalize)).await,
        Stage::Finalize,
    )
    .await;
    let again = deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, first, "later finalize messages change nothing");
    assert_eq!(
        (
            first.counts.total,
            first.counts.completed,
            first.counts.failed
        ),
        (20, 20, 0)
    );
    assert_eq!(mock.hits("gpt-dup"), 20, "no line ran twice");
    let key = prism_core::files::file_blob_key(&alpha(), first.output_file_id.as_ref().unwrap());
    let mut stream = deps.blobs.get(&key).await.unwrap();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    let ids: Vec<String> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(ids, (0..20).map(|i| format!("d{i}")).collect::<Vec<_>>());
    let outputs = deps
        .files
        .list(
            &alpha(),
            &prism_core::files::FileListQuery::parse(Some("batch_output"), None, None, None)
                .unwrap(),
            deps.clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(outputs.items.len(), 1, "one output file");
}

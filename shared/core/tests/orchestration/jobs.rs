//! Async and scheduled jobs: submit, the worker's run with its retries, cancel, dead letters.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::support::*;

fn policy(max_attempts: u32) -> Policies {
    Policies {
        work: WorkPolicy {
            max_attempts,
            ..WorkPolicy::default()
        },
        ..policies()
    }
}

async fn submit(world: &World, prompt: &str) -> Job {
    submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat(prompt),
        None,
    )
    .await
    .unwrap()
    .job
}

fn scheduled_body(at: Timestamp, prompt: &str) -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(&chat(prompt)).unwrap();
    serde_json::json!({"scheduled_at": format_rfc3339(at), "request": request})
        .to_string()
        .into_bytes()
}

async fn submit_scheduled(world: &World, at: Timestamp) -> Job {
    submit_scheduled_job(&world.deps, &tenant(), &scheduled_body(at, "later"), None)
        .await
        .unwrap()
        .job
}

fn error_code(job: &Job) -> Option<&str> {
    job.error.as_ref().and_then(|e| e.code.as_deref())
}

#[tokio::test(start_paused = true)]
async fn an_async_job_runs_from_its_queued_message_to_completed_with_the_upstream_body() {
    let world = World::new();
    let job = submit(&world, "hello").await;
    assert_eq!(job.status, JobStatus::Pending);
    assert_eq!(world.queue.visible(), [WorkItem::Job(job.job_ref())]);

    let ran = world.drain().await;

    assert_eq!(ran, [(WorkItem::Job(job.job_ref()), QueueAction::Ack)]);
    let done = world.job(&job).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.result.as_deref(), Some(echo_body("hello").as_str()));
    assert_eq!(done.attempts, 1);
    assert!(done.started_at.is_some() && done.completed_at.is_some());
    let calls = world.upstream.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(
        (calls[0].model.as_str(), &calls[0].body),
        (MODEL, &chat("hello"))
    );
    assert!(
        world.queue.items().is_empty(),
        "the message was acknowledged"
    );
}

#[tokio::test(start_paused = true)]
async fn a_job_for_a_model_no_provider_routes_is_refused_and_nothing_is_queued() {
    let world = World::new();
    let body =
        bytes::Bytes::from(r#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#);
    let refused = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        body,
        None,
    )
    .await;
    assert!(
        matches!(refused, Err(ServiceError::InvalidRequest { code: Some(ref c), .. }) if c == "model_not_found")
    );
    assert!(world.queue.items().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_replayed_idempotency_key_returns_the_first_job_and_a_new_body_is_refused() {
    let world = World::new();
    let first = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("a"),
        Some("k1"),
    )
    .await
    .unwrap();
    let again = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("a"),
        Some("k1"),
    )
    .await
    .unwrap();
    assert!(!first.replayed && again.replayed);
    assert_eq!(again.job.id, first.job.id);
    let other = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("b"),
        Some("k1"),
    )
    .await;
    assert!(
        matches!(other, Err(ServiceError::InvalidRequest { code: Some(ref c), .. }) if c == "idempotency_key_reused")
    );
    assert_eq!(
        world.queue.items().len(),
        1,
        "only the first submit triggered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_5xx_is_retried_and_the_job_completes_on_the_next_attempt() {
    let world = World::new();
    world.upstream.script([Reply::status(503), Reply::Echo]);
    let job = submit(&world, "retry me").await;

    let ran = world.drain().await;

    assert_eq!(ran.len(), 1, "retried inside one delivery");
    let done = world.job(&job).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.attempts, 2);
    assert_eq!(world.upstream.call_count(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_with_retry_after_waits_that_long_before_the_next_attempt() {
    let world = World::new();
    let wait = Duration::from_secs(3);
    world
        .upstream
        .script([Reply::rate_limited(wait), Reply::Echo]);
    let job = submit(&world, "slow down").await;

    world.drain().await;

    let calls = world.upstream.calls();
    assert_eq!(calls.len(), 2);
    assert!(calls[0].at.until(calls[1].at) >= wait, "{calls:?}");
    let done = world.job(&job).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
}

#[tokio::test(start_paused = true)]
async fn a_retry_wait_past_the_inline_limit_releases_the_job_until_its_message_returns() {
    let world = World::new();
    let wait = Duration::from_secs(60);
    world
        .upstream
        .script([Reply::rate_limited(wait), Reply::Echo]);
    let job = submit(&world, "later please").await;

    let ran = world.drain().await;

    assert_eq!(
        ran,
        [(WorkItem::Job(job.job_ref()), QueueAction::RetryAfter(wait))]
    );
    let waiting = world.job(&job).await;
    assert_eq!((waiting.status, waiting.attempts), (JobStatus::Running, 1));
    assert_eq!(
        world.jobs.lease_of(&job.job_ref()).0,
        None,
        "the lease was given up"
    );
    assert_eq!(world.upstream.call_count(), 1);

    world.advance(wait).await;
    world.drain().await;

    let done = world.job(&job).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
}

#[tokio::test(start_paused = true)]
async fn a_job_that_keeps_failing_gives_up_after_max_attempts_with_the_upstream_error() {
    let world = World::with(policy(3));
    world
        .upstream
        .script([Reply::status(500), Reply::status(502), Reply::status(500)]);
    let job = submit(&world, "doomed").await;

    world.drain().await;

    let failed = world.job(&job).await;
    assert_eq!((failed.status, failed.attempts), (JobStatus::Failed, 3));
    assert_eq!(error_code(&failed), Some("upstream_error"));
    assert_eq!(failed.result, None);
    assert_eq!(
        world.upstream.call_count(),
        3,
        "no call after the last attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn an_invalid_upstream_body_is_retried_then_fails_as_invalid_upstream_response() {
    let world = World::with(policy(2));
    world.upstream.script([Reply::Invalid, Reply::Invalid]);
    let job = submit(&world, "garbled").await;

    world.drain().await;

    let failed = world.job(&job).await;
    assert_eq!((failed.status, failed.attempts), (JobStatus::Failed, 2));
    assert_eq!(error_code(&failed), Some("invalid_upstream_response"));
}

#[tokio::test(start_paused = true)]
async fn a_client_error_from_the_upstream_fails_at_once_with_its_own_error() {
    let world = World::new();
    world.upstream.script([Reply::Status {
        status: 400,
        retry_after: None,
        code: Some("context_length_exceeded"),
    }]);
    let job = submit(&world, "too long").await;

    world.drain().await;

    let failed = world.job(&job).await;
    assert_eq!((failed.status, failed.attempts), (JobStatus::Failed, 1));
    assert_eq!(error_code(&failed), Some("context_length_exceeded"));
    assert_eq!(world.upstream.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn an_attempt_that_times_out_is_retried() {
    let world = World::with(Policies {
        work: WorkPolicy {
            upstream_timeout: Duration::from_secs(10),
            ..WorkPolicy::default()
        },
        ..policies()
    });
    world
        .upstream
        .script([Reply::Hang(Hang::new(), Box::new(Reply::Echo)), Reply::Echo]);
    let job = submit(&world, "tick tock").await;

    world.drain().await;

    let done = world.job(&job).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_job_mid_call_aborts_the_call_and_stores_no_result() {
    let world = World::new();
    let hang = Hang::new();
    world
        .upstream
        .script([Reply::Hang(hang.clone(), Box::new(Reply::Echo))]);
    let job = submit(&world, "never mind").await;
    let delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    let deps = world.deps.clone();
    let worker = {
        let delivery = delivery.clone();
        tokio::spawn(async move { handle_delivery(&deps, &delivery, None).await })
    };
    world.upstream.wait_for_calls(1).await;

    let cancelled = cancel_job(&world.deps, &tenant(), JobKind::Async, job.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    let action = worker.await.unwrap();
    hang.release();

    assert_eq!(action, QueueAction::Ack);
    assert_eq!(
        world.upstream.aborted(),
        1,
        "the in-flight call was dropped"
    );
    let stored = world.job(&job).await;
    assert_eq!((stored.status, stored.result), (JobStatus::Cancelled, None));
    let again = cancel_job(&world.deps, &tenant(), JobKind::Async, job.id.as_str())
        .await
        .unwrap();
    assert_eq!(
        again.status,
        JobStatus::Cancelled,
        "a second cancel is answered as the first"
    );
    assert_eq!(world.upstream.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_finished_job_is_a_conflict_and_an_unknown_one_is_not_found() {
    let world = World::new();
    let job = submit(&world, "done").await;
    world.drain().await;

    let late = cancel_job(&world.deps, &tenant(), JobKind::Async, job.id.as_str()).await;
    assert!(matches!(
        late,
        Err(ServiceError::Conflict {
            status: JobStatus::Completed,
            ..
        })
    ));
    let other = TenantId::parse("other").unwrap();
    let foreign = cancel_job(&world.deps, &other, JobKind::Async, job.id.as_str()).await;
    assert!(matches!(foreign, Err(ServiceError::NotFound { .. })));
    assert_eq!(world.job(&job).await.status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_job_cancelled_before_its_message_arrives_is_never_run() {
    let world = World::new();
    let job = submit(&world, "skip").await;
    cancel_job(&world.deps, &tenant(), JobKind::Async, job.id.as_str())
        .await
        .unwrap();

    let ran = world.drain().await;

    assert_eq!(ran, [(WorkItem::Job(job.job_ref()), QueueAction::Ack)]);
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_message_for_a_job_another_worker_holds_comes_back_after_that_lease() {
    let world = World::new();
    let job = submit(&world, "mine").await;
    let now = world.now();
    let held_until = now.plus(Duration::from_secs(90));
    let other = Lease {
        token: "other-worker".into(),
        expires_at: held_until,
    };
    world
        .deps
        .jobs
        .claim(&job.job_ref(), &other, now)
        .await
        .unwrap();

    let ran = world.drain().await;

    assert_eq!(
        ran,
        [(
            WorkItem::Job(job.job_ref()),
            QueueAction::RetryAfter(Duration::from_secs(91))
        )]
    );
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_worker_stopping_mid_call_hands_the_job_back_for_the_next_delivery() {
    let world = World::new();
    world
        .upstream
        .script([Reply::Hang(Hang::new(), Box::new(Reply::Echo))]);
    let job = submit(&world, "interrupted").await;
    let delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    let stop = CancellationToken::new();
    let worker = {
        let (deps, delivery, stop) = (world.deps.clone(), delivery.clone(), stop.clone());
        tokio::spawn(async move { handle_delivery_until(&deps, &delivery, None, &stop).await })
    };
    world.upstream.wait_for_calls(1).await;

    stop.cancel();
    let action = worker.await.unwrap();

    assert_eq!(action, QueueAction::RetryAfter(Duration::ZERO));
    assert_eq!(world.upstream.aborted(), 1);
    assert_eq!(
        world.jobs.lease_of(&job.job_ref()).0,
        None,
        "lease released"
    );
    world.settle(&delivery, action).await;
    world.drain().await;
    let done = world.job(&job).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
}

#[tokio::test(start_paused = true)]
async fn a_message_received_too_often_dead_letters_its_job_as_processing_failed() {
    let world = World::new();
    let job = submit(&world, "poison").await;
    let mut delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    delivery.receive_count = world.deps.work_policy.max_receives + 1;

    let action = handle_delivery(&world.deps, &delivery, None).await;

    assert_eq!(action, QueueAction::Ack);
    let failed = world.job(&job).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(error_code(&failed), Some("processing_failed"));
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_dead_letter_fails_an_unfinished_job_and_leaves_a_finished_one_alone() {
    let world = World::new();
    let stuck = submit(&world, "stuck").await;
    let item = WorkItem::Job(stuck.job_ref());
    assert_eq!(dead_letter_item(&world.deps, &item).await, QueueAction::Ack);
    assert_eq!(
        error_code(&world.job(&stuck).await),
        Some("processing_failed")
    );

    let done = submit(&world, "fine").await;
    world.drain().await;
    let item = WorkItem::Job(done.job_ref());
    assert_eq!(dead_letter_item(&world.deps, &item).await, QueueAction::Ack);
    assert_eq!(world.job(&done).await.status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_job_beyond_the_queue_delay_waits_in_the_scheduler_until_due() {
    let world = World::new();
    let due = world.now().plus(Duration::from_secs(3600));
    let job = submit_scheduled(&world, due).await;
    assert!(world.queue.items().is_empty());
    assert_eq!(
        world.scheduler.pending(),
        [(WorkItem::Job(job.job_ref()), due)]
    );

    world.advance(Duration::from_secs(3599)).await;
    assert!(world.drain().await.is_empty(), "not due yet");
    world.advance(Duration::from_secs(1)).await;
    world.drain().await;

    let done = world.job(&job).await;
    assert_eq!(done.status, JobStatus::Completed);
    assert!(done.started_at.is_some_and(|at| at >= due));
    assert_eq!(world.upstream.call_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_job_within_the_queue_delay_is_a_delayed_message() {
    let world = World::new();
    let lead = Duration::from_secs(600);
    assert!(lead <= MAX_QUEUE_DELAY);
    let due = world.now().plus(lead);
    let job = submit_scheduled(&world, due).await;
    assert!(world.scheduler.pending().is_empty());
    assert_eq!(world.queue.next_visible_at(), Some(due));

    world.advance(lead).await;
    world.drain().await;

    assert_eq!(world.job(&job).await.status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn a_scheduled_job_delivered_early_is_put_back_until_its_time() {
    let world = World::new();
    let lead = Duration::from_secs(600);
    let job = submit_scheduled(&world, world.now().plus(lead)).await;
    world
        .deps
        .queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::ZERO)
        .await
        .unwrap();

    let ran = world.drain().await;

    assert_eq!(
        ran,
        [(
            WorkItem::Job(job.job_ref()),
            QueueAction::RetryAfter(lead + Duration::from_millis(100))
        )]
    );
    let waiting = world.job(&job).await;
    assert_eq!((waiting.status, waiting.attempts), (JobStatus::Pending, 0));
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelling_a_scheduled_job_drops_its_pending_delivery() {
    let world = World::new();
    let job = submit_scheduled(&world, world.now().plus(Duration::from_secs(7200))).await;
    assert_eq!(world.scheduler.pending().len(), 1);

    cancel_job(&world.deps, &tenant(), JobKind::Scheduled, job.id.as_str())
        .await
        .unwrap();

    assert!(world.scheduler.pending().is_empty());
    world.advance(Duration::from_secs(7200)).await;
    assert!(world.drain().await.is_empty());
    assert_eq!(world.upstream.call_count(), 0);
}

//! The worker's delivery handling over real SQLite and the mock upstream over HTTP: redeliveries,
//! dead letters and long retry waits, the cases the end-to-end suites cannot time precisely.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prism_core::deps::Deps;
use prism_core::deps::{Policies, WorkPolicy};
use prism_core::dispatch::{QueueAction, handle_delivery};
use prism_core::jobs::NewJob;
use prism_core::jobs::service::JobPolicy;
use prism_core::ports::{ClaimOutcome, Delivery, Lease, WorkItem, WorkQueue};
use prism_core::{Clock, JobKind, JobStatus, SystemClock, TenantId};
use prism_embedded::{Database, EmbeddedBackend, SqliteWorkQueue};
use prism_testkit::{MockUpstream, spawn_mock_upstream};
use prism_upstream::{HttpUpstream, ProviderConfig, UpstreamOptions};

struct Harness {
    deps: Deps,
    queue: SqliteWorkQueue,
    mock: MockUpstream,
    _dir: tempfile::TempDir,
}

async fn harness(policies: Policies) -> Harness {
    let mock = spawn_mock_upstream("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("w.sqlite3")).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let upstream = HttpUpstream::new(
        vec![ProviderConfig {
            name: "mock".into(),
            base_url: mock.base_url(),
            api_key: None,
            models: vec!["*".into()],
            batch: Default::default(),
            flex_fallback: Default::default(),
        }],
        UpstreamOptions::default(),
    )
    .unwrap();
    let EmbeddedBackend { deps, queue, .. } =
        EmbeddedBackend::new(&db, dir.path(), clock, Arc::new(upstream), policies);
    Harness {
        deps,
        queue,
        mock,
        _dir: dir,
    }
}

async fn submit(h: &Harness, model: &str) -> NewJob {
    submit_saying(h, model, "hi").await
}

async fn submit_saying(h: &Harness, model: &str, content: &str) -> NewJob {
    let now = h.deps.clock.now();
    let body =
        format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"{content}"}}]}}"#);
    let job = NewJob {
        id: h.deps.ids.job_id(now),
        tenant: TenantId::parse("alpha").unwrap(),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: model.into(),
        request: Bytes::from(body),
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    h.deps.jobs.create(&job, None).await.unwrap();
    h.queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::ZERO)
        .await
        .unwrap();
    job
}

/// The one visible delivery, hidden for 30 s.
async fn receive_one(h: &Harness) -> Delivery {
    h.queue
        .receive(1, Duration::from_secs(30))
        .await
        .unwrap()
        .remove(0)
}

/// Runs `delivery` of `job` and checks that it completed on its first attempt, with one call to
/// the upstream.
async fn runs_once_to_completion(h: &Harness, delivery: &Delivery, job: &NewJob) {
    assert_eq!(
        handle_delivery(&h.deps, delivery, None).await,
        QueueAction::Ack
    );
    assert_eq!(status(h, job).await, (JobStatus::Completed, 1));
    assert_eq!(h.mock.hits(&job.model), 1);
}

async fn status(h: &Harness, job: &NewJob) -> (JobStatus, u32) {
    let got = h
        .deps
        .jobs
        .get(&job.tenant, &job.id, h.deps.clock.now())
        .await
        .unwrap()
        .unwrap();
    (got.status, got.attempts)
}

#[tokio::test]
async fn redelivery_under_a_live_lease_neither_calls_upstream_nor_acknowledges() {
    let h = harness(Policies::default()).await;
    let job = submit(&h, "gpt-redelivered").await;
    let now = h.deps.clock.now();
    let other = Lease {
        token: "another-worker".into(),
        expires_at: now.plus(Duration::from_secs(40)),
    };
    assert!(matches!(
        h.deps
            .jobs
            .claim(&job.job_ref(), &other, now)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));

    let delivery = h
        .queue
        .receive(1, Duration::from_secs(5))
        .await
        .unwrap()
        .remove(0);
    match handle_delivery(&h.deps, &delivery, None).await {
        QueueAction::RetryAfter(wait) => {
            assert!(
                wait >= Duration::from_secs(38) && wait <= Duration::from_secs(42),
                "{wait:?}"
            )
        }
        QueueAction::Ack => panic!("a redelivery under a live lease must not be acknowledged"),
    }
    assert_eq!(h.mock.hits("gpt-redelivered"), 0);
    assert_eq!(status(&h, &job).await.0, JobStatus::Running);
}

/// The receive that claims a job also reads its request body, so the worker calls the upstream
/// without a read of its own; a delivery whose claim was refused carries no body.
#[tokio::test]
async fn a_claiming_receive_hands_over_the_request_body_only_with_a_taken_claim() {
    let h = harness(Policies::default()).await;
    let job = submit(&h, "gpt-body-in-receive").await;
    let delivery = receive_one(&h).await;
    let claim = delivery.claim.as_ref().expect("the receive claims the job");
    assert!(matches!(claim.outcome, ClaimOutcome::Claimed(_)));
    assert_eq!(claim.request.as_ref(), Some(&job.request));

    // Made visible again under the live lease: the second receive's claim is refused.
    h.queue
        .extend(&delivery.receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_one(&h).await;
    let refused = again.claim.as_ref().expect("the receive tried to claim");
    assert!(matches!(refused.outcome, ClaimOutcome::Busy { .. }));
    assert_eq!(refused.request, None);

    runs_once_to_completion(&h, &delivery, &job).await;
}

/// A large body is not read on the writer's path: the receive claims the job but leaves the body
/// to the worker, which reads it itself and runs the job.
#[tokio::test]
async fn a_large_request_body_is_left_for_the_worker_to_read() {
    let h = harness(Policies::default()).await;
    let job = submit_saying(&h, "gpt-large-body", &"x".repeat(40 * 1024)).await;
    let delivery = receive_one(&h).await;
    let claim = delivery.claim.as_ref().expect("the receive claims the job");
    assert!(matches!(claim.outcome, ClaimOutcome::Claimed(_)));
    assert_eq!(claim.request, None);
    runs_once_to_completion(&h, &delivery, &job).await;
}

/// A worker that hangs outside any bounded step (its upstream call and store writes have
/// timeouts; a stuck task has none) keeps extending its message beside the hung work, so the
/// message never reappears. Its lease is not renewed, though: once it lapses the reconciler
/// triggers the job again, the next receive takes the row over under a new receipt, and the job
/// completes once. The hung worker's late heartbeat and acknowledgement change nothing.
#[tokio::test]
async fn a_job_whose_worker_hangs_is_taken_over_and_completes_once() {
    // The receive claims the job under a lease of one attempt (1 s, no margin).
    let h = harness(Policies {
        work: WorkPolicy {
            stranded_after: Duration::ZERO,
            upstream_timeout: Duration::from_secs(1),
            ..WorkPolicy::default()
        },
        jobs: JobPolicy {
            lease_margin: Duration::ZERO,
            ..JobPolicy::default()
        },
        ..Policies::default()
    })
    .await;
    let job = submit(&h, "gpt-taken-over").await;
    let hung = receive_one(&h).await;
    let claim = hung.claim.as_ref().expect("the receive claims the job");
    assert!(matches!(claim.outcome, ClaimOutcome::Claimed(_)));
    // The lease lapses while the hung worker's heartbeat keeps its message hidden.
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    h.queue
        .extend(&hung.receipt, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        h.queue
            .receive(1, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );

    let report = prism_core::reconcile::reconcile(&h.deps).await.unwrap();
    assert_eq!(report.retriggered, 1, "{report:?}");
    let taken_over = receive_one(&h).await;
    assert_ne!(taken_over.receipt, hung.receipt);
    // The hung worker's heartbeat after the take-over does not hide the new delivery's row.
    h.queue
        .extend(&hung.receipt, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(
        handle_delivery(&h.deps, &taken_over, None).await,
        QueueAction::Ack
    );
    h.queue.ack(&taken_over.receipt).await.unwrap();
    h.queue.ack(&hung.receipt).await.unwrap();
    assert_eq!(status(&h, &job).await, (JobStatus::Completed, 2));
    assert_eq!(h.mock.hits("gpt-taken-over"), 1);
    let report = prism_core::reconcile::reconcile(&h.deps).await.unwrap();
    assert_eq!(report.retriggered, 0, "{report:?}");
}

#[tokio::test]
async fn a_message_delivered_too_often_fails_its_job_with_processing_failed() {
    let h = harness(Policies {
        work: WorkPolicy {
            max_receives: 2,
            ..WorkPolicy::default()
        },
        ..Policies::default()
    })
    .await;
    let job = submit(&h, "gpt-poison").await;
    for _ in 0..2 {
        let d = h.queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(d.len(), 1);
    }
    let third = receive_one(&h).await;
    assert_eq!(third.receive_count, 3);
    assert_eq!(
        handle_delivery(&h.deps, &third, None).await,
        QueueAction::Ack
    );
    let got = h
        .deps
        .jobs
        .get(&job.tenant, &job.id, h.deps.clock.now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Failed);
    assert_eq!(
        got.error.unwrap().code.as_deref(),
        Some("processing_failed")
    );
    assert_eq!(h.mock.hits("gpt-poison"), 0);
}

#[tokio::test]
async fn a_long_retry_wait_releases_the_job_and_hides_its_message() {
    let h = harness(Policies {
        jobs: JobPolicy {
            max_inline_retry_wait: Duration::ZERO,
            ..JobPolicy::default()
        },
        ..Policies::default()
    })
    .await;
    let job = submit(&h, "mock-429-1-release").await;
    let delivery = receive_one(&h).await;
    assert_eq!(
        handle_delivery(&h.deps, &delivery, None).await,
        QueueAction::RetryAfter(Duration::from_secs(1))
    );
    assert_eq!(status(&h, &job).await, (JobStatus::Running, 1));

    // The next delivery claims the released job at once and finishes it.
    let again = h.queue.receive(1, Duration::from_secs(30)).await.unwrap();
    assert!(
        again.is_empty(),
        "still hidden: the trigger has not yet applied the delay"
    );
    h.queue
        .extend(&delivery.receipt, Duration::ZERO)
        .await
        .unwrap();
    let again = receive_one(&h).await;
    assert_eq!(
        handle_delivery(&h.deps, &again, None).await,
        QueueAction::Ack
    );
    assert_eq!(status(&h, &job).await, (JobStatus::Completed, 2));
    assert_eq!(h.mock.hits("mock-429-1-release"), 2);
}

#[tokio::test]
async fn a_job_near_its_deadline_is_released_rather_than_slept_on() {
    let h = harness(Policies::default()).await;
    let job = submit(&h, "mock-500-1-deadline").await;
    let delivery = receive_one(&h).await;
    // A Lambda with little time left: no room for a wait plus another attempt.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    assert!(matches!(
        handle_delivery(&h.deps, &delivery, Some(deadline)).await,
        QueueAction::RetryAfter(_)
    ));
    assert_eq!(status(&h, &job).await, (JobStatus::Running, 1));
    assert_eq!(h.mock.hits("mock-500-1-deadline"), 1);
}

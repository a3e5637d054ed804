//! The trigger handlers over real SQLite job storage, a scripted upstream and a queue that
//! records visibility changes, fed the recorded SQS events in `infra/events/`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers sit outside #[test] functions, where clippy.toml's allowances do not reach"
)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::SqsEvent;
use bytes::Bytes;
use prism_core::deps::Deps;
use prism_core::deps::Policies;
use prism_core::jobs::NewJob;
use prism_core::ports::{
    Completion, Delivery, Receipt, Relay, Upstream, UpstreamError, WorkItem, WorkQueue,
};
use prism_core::{Clock, Job, JobId, JobKind, JobStatus, StoreError, SystemClock, TenantId};
use prism_embedded::{Database, EmbeddedBackend};
use prism_lambda::{handle_dead_letter_event, handle_work_event};
use tokio::time::Instant;

const JOB_8: &str = "job_01m8fjznbgbn54wfrbn0pv7xk8";
const JOB_9: &str = "job_01m8fjznbgbn54wfrbn0pv7xk9";
const MESSAGE_9: &str = "6aaffc90-0820-4dd4-a5d7-0b9292e06861";
const RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);
const SLOW: Duration = Duration::from_millis(500);

/// Answers by model: `gpt-ok` completes, `gpt-slow` completes after [`SLOW`], and
/// `gpt-rate-limited` answers 429 asking for [`RATE_LIMIT_WAIT`].
struct ScriptedUpstream;

#[async_trait]
impl Upstream for ScriptedUpstream {
    fn routes(&self, _model: &str) -> bool {
        true
    }

    async fn complete(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        _body: Bytes,
        _timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        match model {
            "gpt-rate-limited" => Err(UpstreamError::Status {
                status: 429,
                error: None,
                retry_after: Some(RATE_LIMIT_WAIT),
                should_retry: None,
            }),
            "gpt-slow" => {
                tokio::time::sleep(SLOW).await;
                Ok(Completion { body: "{}".into() })
            }
            _ => Ok(Completion { body: "{}".into() }),
        }
    }

    async fn relay(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        _body: Bytes,
    ) -> Result<Relay, UpstreamError> {
        Err(UpstreamError::NoRoute(model.into()))
    }
}

/// Lambda receives and deletes for us; the handlers only change visibilities, recorded here.
#[derive(Default)]
struct RecordingQueue {
    extended: Mutex<Vec<(Receipt, Duration)>>,
}

#[async_trait]
impl WorkQueue for RecordingQueue {
    async fn enqueue(&self, _item: &WorkItem, _delay: Duration) -> Result<(), StoreError> {
        Ok(())
    }

    async fn receive(
        &self,
        _max: usize,
        _visibility: Duration,
    ) -> Result<Vec<Delivery>, StoreError> {
        Ok(Vec::new())
    }

    async fn ack(&self, _receipt: &Receipt) -> Result<(), StoreError> {
        Ok(())
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError> {
        self.extended
            .lock()
            .unwrap()
            .push((receipt.clone(), visibility));
        Ok(())
    }
}

struct Harness {
    deps: Deps,
    queue: Arc<RecordingQueue>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("lambda.sqlite3")).unwrap();
    let queue = Arc::new(RecordingQueue::default());
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut deps = EmbeddedBackend::new(
        &db,
        dir.path(),
        clock,
        Arc::new(ScriptedUpstream),
        Policies::default(),
    )
    .deps;
    // The store's own queue is not used here: the deliveries come from the test.
    deps.queue = queue.clone();
    Harness {
        deps,
        queue,
        _dir: dir,
    }
}

fn fixture(name: &str) -> SqsEvent {
    let path = format!("{}/../../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn acme() -> TenantId {
    TenantId::parse("acme").unwrap()
}

async fn submit(h: &Harness, id: &str, model: &str) {
    let body = format!(r#"{{"model":"{model}","messages":[{{"role":"user","content":"hi"}}]}}"#);
    let job = NewJob {
        id: JobId::parse(id).unwrap(),
        tenant: acme(),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: model.into(),
        request: Bytes::from(body),
        created_at: h.deps.clock.now(),
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    h.deps.jobs.create(&job, None).await.unwrap();
}

async fn job(h: &Harness, id: &str) -> Job {
    h.deps
        .jobs
        .get(&acme(), &JobId::parse(id).unwrap(), h.deps.clock.now())
        .await
        .unwrap()
        .unwrap()
}

fn failed_ids(response: &aws_lambda_events::event::sqs::SqsBatchResponse) -> Vec<&str> {
    response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect()
}

fn far_deadline() -> Instant {
    Instant::now() + Duration::from_secs(600)
}

#[tokio::test]
async fn job_batch_acknowledges_finished_and_malformed_records_and_delays_a_rate_limited_one() {
    // GIVEN one job that completes and one whose upstream asks to come back in a minute
    let h = harness();
    submit(&h, JOB_8, "gpt-ok").await;
    submit(&h, JOB_9, "gpt-rate-limited").await;
    let event = fixture("sqs-jobs.json");
    let receipt_9 = Receipt(event.records[1].receipt_handle.clone().unwrap());

    // WHEN the recorded batch (two jobs and a body that is not ours) is handled
    let response = handle_work_event(&h.deps, &*h.queue, event, far_deadline()).await;

    // THEN only the rate-limited record comes back, hidden for the wait the upstream asked
    assert_eq!(failed_ids(&response), [MESSAGE_9]);
    assert_eq!(
        *h.queue.extended.lock().unwrap(),
        [(receipt_9, RATE_LIMIT_WAIT)]
    );
    assert_eq!(job(&h, JOB_8).await.status, JobStatus::Completed);
    assert!(!job(&h, JOB_9).await.status.is_terminal());
}

#[tokio::test]
async fn job_batch_acknowledges_messages_for_jobs_the_store_does_not_know() {
    let h = harness();

    let response =
        handle_work_event(&h.deps, &*h.queue, fixture("sqs-jobs.json"), far_deadline()).await;

    assert!(failed_ids(&response).is_empty());
    assert!(h.queue.extended.lock().unwrap().is_empty());
}

#[tokio::test]
async fn job_batch_runs_its_records_concurrently() {
    // GIVEN two jobs whose upstream calls each take SLOW
    let h = harness();
    submit(&h, JOB_8, "gpt-slow").await;
    submit(&h, JOB_9, "gpt-slow").await;

    // WHEN their batch is handled
    let started = Instant::now();
    let response =
        handle_work_event(&h.deps, &*h.queue, fixture("sqs-jobs.json"), far_deadline()).await;

    // THEN both complete in about one call's time, not two
    let elapsed = started.elapsed();
    assert!(failed_ids(&response).is_empty());
    assert!(
        elapsed < SLOW * 2 - Duration::from_millis(100),
        "{elapsed:?}"
    );
    assert_eq!(job(&h, JOB_8).await.status, JobStatus::Completed);
    assert_eq!(job(&h, JOB_9).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn dead_letter_fails_an_unfinished_job_with_processing_failed() {
    let h = harness();
    submit(&h, JOB_8, "gpt-ok").await;

    let response = handle_dead_letter_event(&h.deps, fixture("sqs-dead-letters.json")).await;

    assert!(failed_ids(&response).is_empty());
    let failed = job(&h, JOB_8).await;
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(
        failed.error.and_then(|e| e.code).as_deref(),
        Some("processing_failed")
    );
}

#[tokio::test]
async fn dead_letter_leaves_a_completed_job_as_it_is() {
    // GIVEN a job that completed before its message was dead-lettered
    let h = harness();
    submit(&h, JOB_8, "gpt-ok").await;
    handle_work_event(&h.deps, &*h.queue, fixture("sqs-jobs.json"), far_deadline()).await;

    // WHEN the dead letter arrives
    let response = handle_dead_letter_event(&h.deps, fixture("sqs-dead-letters.json")).await;

    // THEN it is acknowledged and the job keeps its result
    assert!(failed_ids(&response).is_empty());
    assert_eq!(job(&h, JOB_8).await.status, JobStatus::Completed);
}

#[tokio::test]
async fn dead_letter_acknowledges_a_malformed_body() {
    let h = harness();
    let mut event = fixture("sqs-dead-letters.json");
    event.records[0].body = Some("not json".into());

    let response = handle_dead_letter_event(&h.deps, event).await;

    assert!(failed_ids(&response).is_empty());
}

//! Contract suites for the storage ports: one suite per port, run against every adapter (SQLite
//! now, DynamoDB/SQS next), so every backend has the same semantics. An adapter crate calls
//! `port_contract!(fresh)` in a test file, where `fresh()` returns new, empty [`Ports`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prism_core::batches::input::{BatchError, ChunkPlan};
use prism_core::batches::{
    BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, BatchStatus, ChunkClaim, ChunkWrite,
    FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use prism_core::files::{FileListQuery, FilePurpose, FileRecord, ListOrder, UploadError};
use prism_core::ids::IdGenerator;
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::keys::{hash_key, mint_key};
use prism_core::list::ListQuery;
use prism_core::ports::{
    BatchResult, BatchStore, BlobStore, CancelOutcome, ClaimOutcome, CreateOutcome, FileStore,
    IdempotencyClaim, JobStore, KeyStore, Lease, Scheduler, WorkItem, WorkQueue,
};
use prism_core::{FileId, JobError, JobId, JobKind, JobStatus, TenantId, Timestamp};

use crate::clock::TestClock;

/// The adapters under test, sharing one clock.
pub struct Ports {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub keys: Arc<dyn KeyStore>,
    pub scheduler: Arc<dyn Scheduler>,
    pub schedules: Arc<dyn ScheduleTime>,
    pub files: Arc<dyn FileStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub batches: Arc<dyn BatchStore>,
    pub clock: Arc<dyn TestClock>,
}

/// Lets time pass for the scheduler without waiting for it: a manual clock advances; on the
/// emulator, the pump fires what falls due within the span.
#[async_trait]
pub trait ScheduleTime: Send + Sync {
    async fn pass(&self, by: Duration);
}

#[async_trait]
impl<C: TestClock> ScheduleTime for C {
    async fn pass(&self, by: Duration) {
        self.advance(by).await;
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn lease(token: &str, until: Timestamp) -> Lease {
    Lease {
        token: token.to_owned(),
        expires_at: until,
    }
}

async fn new_job(p: &Ports, ids: &IdGenerator, owner: &str) -> NewJob {
    let now = p.clock.now();
    let job = NewJob {
        id: ids.job_id(now),
        tenant: tenant(owner),
        kind: JobKind::Async,
        model: "gpt-contract".into(),
        request: Bytes::from_static(br#"{"model":"gpt-contract","messages":[]}"#),
        created_at: now,
        scheduled_at: None,
        metadata: None,
    };
    let outcome = p.jobs.create(&job, None).await.unwrap();
    let CreateOutcome::Created { triggered } = outcome else {
        panic!("expected a create, got {outcome:?}");
    };
    if triggered {
        // Adapters whose create also queues the job: consume that first delivery, so every
        // case starts from a stored job with no message waiting, on every adapter.
        let first = p.queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1, "a triggered create must leave one message");
        p.queue.ack(&first[0].receipt).await.unwrap();
    }
    job
}

fn page(limit: usize, after: Option<JobId>, status: Option<JobStatus>) -> ListQuery {
    ListQuery {
        limit,
        after,
        status,
    }
}

async fn claimed(p: &Ports, id: &JobRef, token: &str) {
    let now = p.clock.now();
    match p
        .jobs
        .claim(id, &lease(token, now.plus(HOUR)), now)
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed(job) => assert_eq!(job.status, JobStatus::Running),
        other => panic!("expected a claim, got {other:?}"),
    }
}

pub async fn created_job_is_pending_and_visible_to_its_tenant_only(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let now = p.clock.now();
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Pending);
    assert_eq!(got.model, "gpt-contract");
    assert_eq!(got.attempts, 0);
    assert!(
        p.jobs
            .get(&tenant("beta"), &job.id, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        p.jobs.request_body(&job.job_ref()).await.unwrap().unwrap(),
        job.request
    );
}

pub async fn idempotency_claim_replays_within_its_tenant(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let claim = |hash: &str| IdempotencyClaim {
        key: "key-1".into(),
        body_hash: hash.into(),
        expires_at: now.plus(HOUR),
    };
    let mut job = NewJob {
        id: ids.job_id(now),
        tenant: tenant("alpha"),
        kind: JobKind::Async,
        model: "m".into(),
        request: Bytes::from_static(b"{}"),
        created_at: now,
        scheduled_at: None,
        metadata: None,
    };
    let first = job.id.clone();
    assert!(matches!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
    job.id = ids.job_id(now);
    assert_eq!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Replayed {
            job_id: first.clone(),
            same_body: true
        }
    );
    assert_eq!(
        p.jobs.create(&job, Some(&claim("h2"))).await.unwrap(),
        CreateOutcome::Replayed {
            job_id: first.clone(),
            same_body: false
        }
    );
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, now)
            .await
            .unwrap()
            .is_none(),
        "a replay writes no job"
    );
    job.tenant = tenant("beta");
    assert!(matches!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
}

pub async fn a_live_lease_keeps_other_claimants_out_and_fences_stale_writes(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let now = p.clock.now();
    let short = Duration::from_secs(2);
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("first", now.plus(short)), now).await.unwrap(),
        ClaimOutcome::Claimed(j) if j.attempts == 1 && j.started_at.is_some()
    ));
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("second", now.plus(short)), now).await.unwrap(),
        ClaimOutcome::Busy { lease_expires_at } if lease_expires_at == now.plus(short)
    ));
    assert!(p.jobs.still_holds(&job.job_ref(), "first").await.unwrap());

    p.clock.advance(short + Duration::from_millis(500)).await;
    let later = p.clock.now();
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("second", later.plus(short)), later).await.unwrap(),
        ClaimOutcome::Claimed(j) if j.attempts == 2
    ));
    let done = Finish::Completed {
        result: r#"{"id":"x"}"#.into(),
    };
    assert!(
        !p.jobs
            .finish(&job.job_ref(), "first", &done, later, later.plus(HOUR))
            .await
            .unwrap(),
        "stale token"
    );
    assert!(
        !p.jobs
            .begin_attempt(&job.job_ref(), "first", later.plus(HOUR))
            .await
            .unwrap()
    );
    assert!(!p.jobs.still_holds(&job.job_ref(), "first").await.unwrap());
    assert!(
        p.jobs
            .begin_attempt(&job.job_ref(), "second", later.plus(HOUR))
            .await
            .unwrap()
    );
    assert!(
        p.jobs
            .finish(&job.job_ref(), "second", &done, later, later.plus(HOUR))
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Completed);
    assert_eq!(got.attempts, 3);
    assert_eq!(got.result.as_deref(), Some(r#"{"id":"x"}"#));
    assert!(matches!(
        p.jobs
            .claim(&job.job_ref(), &lease("third", later.plus(short)), later)
            .await
            .unwrap(),
        ClaimOutcome::Terminal(_)
    ));
}

pub async fn a_released_lease_can_be_claimed_at_once(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    claimed(&p, &job.job_ref(), "first").await;
    let retry_at = p.clock.now().plus(Duration::from_secs(60));
    assert!(
        p.jobs
            .release(&job.job_ref(), "first", retry_at)
            .await
            .unwrap()
    );
    assert!(
        !p.jobs
            .release(&job.job_ref(), "first", retry_at)
            .await
            .unwrap()
    );
    claimed(&p, &job.job_ref(), "second").await;
}

pub async fn finished_jobs_expire_at_their_retention(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    claimed(&p, &job.job_ref(), "t").await;
    let now = p.clock.now();
    let error = JobError::new("boom", "server_error", Some("x"));
    let failed = Finish::Failed {
        error: error.clone(),
    };
    assert!(
        p.jobs
            .finish(
                &job.job_ref(),
                "t",
                &failed,
                now,
                now.plus(Duration::from_secs(60))
            )
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.status, got.error), (JobStatus::Failed, Some(error)));
    assert_eq!(got.expires_at, Some(now.plus(Duration::from_secs(60))));
    let after = now.plus(Duration::from_secs(61));
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, after)
            .await
            .unwrap()
            .is_none(),
        "expired reads as absent"
    );
    assert!(matches!(
        p.jobs
            .claim(&job.job_ref(), &lease("x", after.plus(HOUR)), after)
            .await
            .unwrap(),
        ClaimOutcome::Missing
    ));
    // Purging is the adapter's business (DynamoDB's TTL does it itself); the job stays gone.
    p.jobs.purge_expired(after, 100).await.unwrap();
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, after)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn cancel_moves_unfinished_jobs_once_and_refuses_finished_ones(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let pending = new_job(&p, &ids, "alpha").await;
    let running = new_job(&p, &ids, "alpha").await;
    let done = new_job(&p, &ids, "alpha").await;
    claimed(&p, &running.job_ref(), "r").await;
    claimed(&p, &done.job_ref(), "d").await;
    let ok = Finish::Completed {
        result: "{}".into(),
    };
    assert!(
        p.jobs
            .finish(&done.job_ref(), "d", &ok, now, now.plus(HOUR))
            .await
            .unwrap()
    );

    let alpha = tenant("alpha");
    assert!(matches!(
        p.jobs
            .cancel(&tenant("beta"), &pending.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    ));
    assert!(
        matches!(p.jobs.cancel(&alpha, &pending.id, now, now.plus(HOUR)).await.unwrap(), CancelOutcome::Cancelled(j) if j.status == JobStatus::Cancelled)
    );
    assert!(matches!(
        p.jobs
            .cancel(&alpha, &pending.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::AlreadyCancelled(_)
    ));
    assert!(matches!(
        p.jobs
            .cancel(&alpha, &running.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    assert!(
        !p.jobs.still_holds(&running.job_ref(), "r").await.unwrap(),
        "the worker sees the cancel"
    );
    assert!(
        !p.jobs
            .finish(&running.job_ref(), "r", &ok, now, now.plus(HOUR))
            .await
            .unwrap(),
        "a late result is discarded"
    );
    assert!(
        matches!(p.jobs.cancel(&alpha, &done.id, now, now.plus(HOUR)).await.unwrap(), CancelOutcome::Finished(j) if j.status == JobStatus::Completed)
    );
}

pub async fn dead_letter_fails_only_unfinished_jobs(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let pending = new_job(&p, &ids, "alpha").await;
    let error = JobError::processing_failed();
    assert!(
        p.jobs
            .fail_unfinished(&pending.job_ref(), &error, now, now.plus(HOUR))
            .await
            .unwrap()
    );
    assert!(
        !p.jobs
            .fail_unfinished(&pending.job_ref(), &error, now, now.plus(HOUR))
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &pending.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.error.unwrap().code.as_deref(),
        Some("processing_failed")
    );
}

pub async fn list_is_newest_first_with_cursor_and_filter(p: Ports) {
    let ids = IdGenerator::new();
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(new_job(&p, &ids, "alpha").await.id);
        p.clock.advance(Duration::from_millis(5)).await;
    }
    new_job(&p, &ids, "beta").await;
    claimed(
        &p,
        &JobRef {
            tenant: tenant("alpha"),
            id: made[1].clone(),
        },
        "t",
    )
    .await;
    let now = p.clock.now();
    let alpha = tenant("alpha");
    let first = p
        .jobs
        .list(&alpha, JobKind::Async, &page(3, None, None), now)
        .await
        .unwrap();
    let got: Vec<_> = first.items.iter().map(|j| j.id.clone()).collect();
    assert_eq!(got, vec![made[4].clone(), made[3].clone(), made[2].clone()]);
    assert!(first.has_more);
    let second = p
        .jobs
        .list(
            &alpha,
            JobKind::Async,
            &page(3, Some(made[2].clone()), None),
            now,
        )
        .await
        .unwrap();
    let got: Vec<_> = second.items.iter().map(|j| j.id.clone()).collect();
    assert_eq!(got, vec![made[1].clone(), made[0].clone()]);
    assert!(!second.has_more);
    let running = p
        .jobs
        .list(
            &alpha,
            JobKind::Async,
            &page(10, None, Some(JobStatus::Running)),
            now,
        )
        .await
        .unwrap();
    assert_eq!(running.items.len(), 1);
    assert_eq!(running.items[0].id, made[1]);
}

pub async fn reconciler_finds_old_pending_jobs_and_ended_leases(p: Ports) {
    let ids = IdGenerator::new();
    let start = p.clock.now();
    let lost = new_job(&p, &ids, "alpha").await;
    let crashed = new_job(&p, &ids, "alpha").await;
    let waiting = new_job(&p, &ids, "alpha").await;
    let finished = new_job(&p, &ids, "alpha").await;
    let short = lease("gone", start.plus(Duration::from_secs(1)));
    assert!(matches!(
        p.jobs
            .claim(&crashed.job_ref(), &short, start)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    claimed(&p, &waiting.job_ref(), "w").await;
    let retry_at = start.plus(Duration::from_secs(4));
    assert!(
        p.jobs
            .release(&waiting.job_ref(), "w", retry_at)
            .await
            .unwrap()
    );
    claimed(&p, &finished.job_ref(), "f").await;
    let ok = Finish::Completed {
        result: "{}".into(),
    };
    assert!(
        p.jobs
            .finish(&finished.job_ref(), "f", &ok, start, start.plus(HOUR))
            .await
            .unwrap()
    );

    assert!(
        p.jobs
            .stranded(start.minus(HOUR), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is old yet"
    );
    p.clock.advance(Duration::from_secs(2)).await;
    let mut found = p
        .jobs
        .stranded(p.clock.now().minus(Duration::from_millis(500)), 10)
        .await
        .unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![lost.job_ref(), crashed.job_ref()],
        "a released job waits for its retry time"
    );
    p.clock.advance(Duration::from_secs(3)).await;
    let found = p
        .jobs
        .stranded(p.clock.now().minus(Duration::from_millis(500)), 10)
        .await
        .unwrap();
    assert!(found.contains(&waiting.job_ref()));
    assert!(!found.contains(&finished.job_ref()));
}

pub async fn queue_delivers_at_least_once_with_visibility(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let item = WorkItem::Job(job.job_ref());
    p.queue.enqueue(&item, Duration::ZERO).await.unwrap();
    let visibility = Duration::from_secs(2);
    let first = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].item.clone(), first[0].receive_count),
        (item.clone(), 1)
    );
    assert!(
        p.queue.receive(10, visibility).await.unwrap().is_empty(),
        "hidden while in flight"
    );

    p.clock
        .advance(visibility + Duration::from_millis(500))
        .await;
    let second = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    p.queue
        .extend(&second[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(third.len(), 1, "extend(0) makes it visible at once");
    p.queue.ack(&third[0].receipt).await.unwrap();
    p.queue.ack(&first[0].receipt).await.unwrap(); // a stale receipt is not an error
    p.clock
        .advance(visibility + Duration::from_millis(500))
        .await;
    assert!(
        p.queue.receive(10, visibility).await.unwrap().is_empty(),
        "acknowledged for good"
    );
}

pub async fn delayed_enqueue_is_invisible_until_due(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    p.queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(p.queue.receive(10, HOUR).await.unwrap().is_empty());
    p.clock.advance(Duration::from_millis(2500)).await;
    assert_eq!(p.queue.receive(10, HOUR).await.unwrap().len(), 1);
}

/// A scheduled job stored without draining any delivery (its first one waits for its time).
async fn new_scheduled_job(p: &Ports, ids: &IdGenerator, owner: &str, due: Timestamp) -> NewJob {
    let now = p.clock.now();
    let job = NewJob {
        id: ids.scheduled_job_id(now),
        tenant: tenant(owner),
        kind: JobKind::Scheduled,
        model: "gpt-contract".into(),
        request: Bytes::from_static(br#"{"model":"gpt-contract","messages":[]}"#),
        created_at: now,
        scheduled_at: Some(due),
        metadata: Some([("team".to_owned(), "search".to_owned())].into()),
    };
    assert!(matches!(
        p.jobs.create(&job, None).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
    job
}

pub async fn claim_waits_for_a_scheduled_job_to_fall_due(p: Ports) {
    let ids = IdGenerator::new();
    let due = p.clock.now().plus(Duration::from_secs(2));
    let job = new_scheduled_job(&p, &ids, "alpha", due).await;
    let now = p.clock.now();
    assert_eq!(
        p.jobs
            .claim(&job.job_ref(), &lease("early", now.plus(HOUR)), now)
            .await
            .unwrap(),
        ClaimOutcome::NotDue { due_at: due }
    );
    assert!(
        !p.jobs
            .stranded(now, 10)
            .await
            .unwrap()
            .contains(&job.job_ref()),
        "a job not yet due is not stranded"
    );
    let stored = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.attempts, stored.started_at),
        (JobStatus::Pending, 0, None),
        "a refused claim leaves no trace"
    );
    p.clock.advance(Duration::from_millis(2500)).await;
    claimed(&p, &job.job_ref(), "on-time").await;
}

pub async fn scheduled_jobs_list_apart_from_async_ones_with_their_metadata(p: Ports) {
    let ids = IdGenerator::new();
    let plain = new_job(&p, &ids, "alpha").await;
    let due = p.clock.now().plus(HOUR);
    let scheduled = new_scheduled_job(&p, &ids, "alpha", due).await;
    let now = p.clock.now();
    let asyncs = p
        .jobs
        .list(&tenant("alpha"), JobKind::Async, &page(10, None, None), now)
        .await
        .unwrap();
    assert_eq!(
        asyncs
            .items
            .iter()
            .map(|j| j.id.clone())
            .collect::<Vec<_>>(),
        vec![plain.id]
    );
    let listed = p
        .jobs
        .list(
            &tenant("alpha"),
            JobKind::Scheduled,
            &page(10, None, None),
            now,
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let got = &listed.items[0];
    assert_eq!(got.id, scheduled.id);
    assert_eq!(got.kind, JobKind::Scheduled);
    assert_eq!(got.scheduled_at, Some(due));
    assert_eq!(got.metadata, scheduled.metadata);
    let fetched = p
        .jobs
        .get(&tenant("alpha"), &scheduled.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&fetched, got);
}

pub async fn scheduler_delivers_at_its_time_once_and_never_after_unschedule(p: Ports) {
    let ids = IdGenerator::new();
    let kept = new_job(&p, &ids, "alpha").await;
    let dropped = new_job(&p, &ids, "alpha").await;
    let at = p.clock.now().plus(Duration::from_secs(20 * 60));
    let (kept, dropped) = (
        WorkItem::Job(kept.job_ref()),
        WorkItem::Job(dropped.job_ref()),
    );
    for item in [&kept, &kept, &dropped] {
        // Scheduling the same item twice (a retried call) still delivers it once.
        p.scheduler.schedule(item, at).await.unwrap();
    }
    assert!(
        p.queue.receive(10, HOUR).await.unwrap().is_empty(),
        "not yet due"
    );
    p.scheduler.unschedule(&dropped).await.unwrap();
    p.scheduler.unschedule(&dropped).await.unwrap(); // nothing left to drop is not an error
    p.schedules.pass(Duration::from_secs(21 * 60)).await;
    let delivered = p.queue.receive(10, HOUR).await.unwrap();
    assert_eq!(
        delivered.iter().map(|d| d.item.clone()).collect::<Vec<_>>(),
        vec![kept]
    );
}

fn file_record(ids: &IdGenerator, owner: &str, now: Timestamp, purpose: FilePurpose) -> FileRecord {
    FileRecord {
        id: ids.file_id(now),
        tenant: tenant(owner),
        purpose,
        filename: "input.jsonl".into(),
        bytes: 42,
        created_at: now,
        expires_at: Some(now.plus(HOUR)),
    }
}

pub async fn file_records_belong_to_their_tenant_until_deleted_or_expired(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let file = file_record(&ids, "alpha", now, FilePurpose::Batch);
    p.files.create(&file).await.unwrap();
    assert_eq!(
        p.files.get(&tenant("alpha"), &file.id, now).await.unwrap(),
        Some(file.clone())
    );
    assert_eq!(
        p.files.get(&tenant("beta"), &file.id, now).await.unwrap(),
        None
    );
    assert_eq!(
        p.files
            .delete(&tenant("beta"), &file.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.files
            .get(&tenant("alpha"), &file.id, now.plus(HOUR))
            .await
            .unwrap(),
        None,
        "expired at its expires_at"
    );
    assert_eq!(
        p.files
            .delete(&tenant("alpha"), &file.id, now)
            .await
            .unwrap(),
        Some(file.clone())
    );
    assert_eq!(
        p.files
            .delete(&tenant("alpha"), &file.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.files.get(&tenant("alpha"), &file.id, now).await.unwrap(),
        None
    );
}

pub async fn file_list_pages_either_way_with_a_purpose_filter(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let mut made = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 {
            FilePurpose::BatchOutput
        } else {
            FilePurpose::Batch
        };
        let file = file_record(&ids, "alpha", now, purpose);
        p.files.create(&file).await.unwrap();
        made.push(file.id);
    }
    p.files
        .create(&file_record(&ids, "beta", now, FilePurpose::Batch))
        .await
        .unwrap();
    let query = |purpose, limit, after: Option<FileId>, order| FileListQuery {
        purpose,
        limit,
        after,
        order,
    };
    let ids_of = |page: &prism_core::list::Page<FileRecord>| {
        page.items.iter().map(|f| f.id.clone()).collect::<Vec<_>>()
    };
    let alpha = tenant("alpha");
    let first = p
        .files
        .list(&alpha, &query(None, 3, None, ListOrder::Desc), now)
        .await
        .unwrap();
    assert_eq!(
        ids_of(&first),
        vec![made[4].clone(), made[3].clone(), made[2].clone()]
    );
    assert!(first.has_more);
    let rest = p
        .files
        .list(
            &alpha,
            &query(None, 3, Some(made[2].clone()), ListOrder::Desc),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids_of(&rest), vec![made[1].clone(), made[0].clone()]);
    assert!(!rest.has_more);
    let ascending = p
        .files
        .list(
            &alpha,
            &query(
                Some(FilePurpose::Batch),
                10,
                Some(made[0].clone()),
                ListOrder::Asc,
            ),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        ids_of(&ascending),
        vec![made[1].clone(), made[3].clone(), made[4].clone()]
    );
    let outputs = p
        .files
        .list(
            &alpha,
            &query(Some(FilePurpose::BatchOutput), 10, None, ListOrder::Desc),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids_of(&outputs), vec![made[2].clone()]);
}

fn chunks(total: usize, chunk: usize) -> Vec<bytes::Bytes> {
    (0..total.div_ceil(chunk))
        .map(|i| {
            let len = chunk.min(total - i * chunk);
            bytes::Bytes::from(vec![b'a' + (i % 26) as u8; len])
        })
        .collect()
}

pub async fn blobs_stream_in_and_out_and_a_failed_upload_leaves_nothing(p: Ports) {
    // Over 5 MiB, so S3 takes the multipart path, in chunks that do not align with its parts.
    let parts = chunks(12 * 1024 * 1024 + 17, 100_003);
    let expected: Vec<u8> = parts.iter().flat_map(|c| c.iter().copied()).collect();
    let body = futures::stream::iter(parts.into_iter().map(Ok)).boxed();
    let written = p.blobs.put_stream("files/alpha/big", body).await.unwrap();
    assert_eq!(written, expected.len() as u64);
    let mut read = Vec::new();
    let mut stream = p.blobs.get("files/alpha/big").await.unwrap();
    while let Some(chunk) = stream.next().await {
        read.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        read == expected,
        "read back {} bytes of {}",
        read.len(),
        expected.len()
    );

    let small = futures::stream::iter([Ok(bytes::Bytes::from_static(b"{\"a\":1}\n"))]).boxed();
    assert_eq!(
        p.blobs
            .put_stream("files/alpha/small", small)
            .await
            .unwrap(),
        8
    );

    for size in [1024, 7 * 1024 * 1024] {
        // Fails after `size` bytes: nothing may be left under the key.
        let failing = futures::stream::iter(chunks(size, 64 * 1024).into_iter().map(Ok))
            .chain(futures::stream::once(async { Err(UploadError::NotUtf8) }))
            .boxed();
        let key = format!("files/alpha/failed-{size}");
        assert!(matches!(
            p.blobs.put_stream(&key, failing).await,
            Err(UploadError::NotUtf8)
        ));
        assert!(
            p.blobs.get(&key).await.is_err(),
            "a failed upload left bytes under {key}"
        );
    }
    p.blobs.delete("files/alpha/big").await.unwrap();
    p.blobs.delete("files/alpha/big").await.unwrap(); // deleting nothing is not an error
    assert!(p.blobs.get("files/alpha/big").await.is_err());
}

async fn new_batch(p: &Ports, ids: &IdGenerator, owner: &str, window: Duration) -> BatchRef {
    let now = p.clock.now();
    let batch = NewBatch {
        id: ids.batch_id(now),
        tenant: tenant(owner),
        input_file_id: ids.file_id(now),
        endpoint: "/v1/chat/completions".into(),
        completion_window: "24h".into(),
        metadata: Some([("k".to_owned(), "v".to_owned())].into()),
        output_expires_after: None,
        created_at: now,
        expires_at: now.plus(window),
    };
    p.batches.create(&batch).await.unwrap();
    batch.batch_ref()
}

fn plans(n: u32) -> Vec<ChunkPlan> {
    (0..n)
        .map(|i| ChunkPlan {
            index: i,
            start: u64::from(i) * 100,
            end: u64::from(i + 1) * 100,
            lines: 10,
        })
        .collect()
}

fn part(key: &str, completed: u32, failed: u32) -> Part {
    Part {
        key: key.into(),
        lines: completed + failed,
        completed,
        failed,
        usage: Usage {
            input_tokens: 3,
            cached_tokens: 0,
            output_tokens: 4,
            reasoning_tokens: 0,
            total_tokens: 7,
        },
        done: format!("0-{}", completed + failed - 1),
    }
}

async fn claim(p: &Ports, batch: &BatchRef, chunk: u32, token: &str) -> ChunkClaim {
    let now = p.clock.now();
    p.batches
        .claim_chunk(batch, chunk, &lease(token, now.plus(HOUR)), now)
        .await
        .unwrap()
}

pub async fn batch_plan_and_fail_happen_only_while_validating(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, BatchStatus::Validating);
    assert_eq!(got.counts, RequestCounts::default());
    assert_eq!(
        got.metadata,
        Some([("k".to_owned(), "v".to_owned())].into())
    );
    assert!(
        p.batches
            .get(&tenant("beta"), &batch.id)
            .await
            .unwrap()
            .is_none()
    );
    let now = p.clock.now();
    assert!(
        p.batches
            .plan(&batch, &plans(3), 30, Some("m"), now)
            .await
            .unwrap()
    );
    assert!(
        !p.batches
            .plan(&batch, &plans(3), 30, Some("m"), now)
            .await
            .unwrap(),
        "planned once"
    );
    let errors = BatchErrors {
        data: vec![BatchError {
            code: "invalid_json_line".into(),
            message: "x".into(),
            param: None,
            line: Some(2),
        }],
        total: 1,
    };
    assert!(
        !p.batches.fail(&batch, &errors, now).await.unwrap(),
        "no longer validating"
    );
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.status, got.counts.total, got.chunks),
        (BatchStatus::InProgress, 30, 3)
    );
    assert_eq!(got.model.as_deref(), Some("m"));
    let chunks = p.batches.chunks(&batch).await.unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.plan.clone()).collect::<Vec<_>>(),
        plans(3)
    );
    assert!(
        chunks
            .iter()
            .all(|c| !c.done && c.cursor == 0 && c.parts.is_empty())
    );

    let other = new_batch(&p, &ids, "alpha", HOUR).await;
    assert!(p.batches.fail(&other, &errors, now).await.unwrap());
    let failed = p
        .batches
        .get(&other.tenant, &other.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(failed.errors, Some(errors));
    assert!(failed.failed_at.is_some());
}

pub async fn chunk_claims_fence_checkpoints_and_counts_add_up(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(2), 20, None, now)
        .await
        .unwrap();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    assert!(matches!(
        claim(&p, &batch, 0, "b").await,
        ChunkClaim::Busy { .. }
    ));
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "b", &part("p0", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p1", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p2", 5, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "b", until).await.unwrap(),
        ChunkWrite::Refused
    );
    let running = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.counts.completed, running.counts.failed),
        (9, 1),
        "counts rise as parts land"
    );
    assert_eq!(running.usage.total_tokens, 14);
    let chunk = &p.batches.chunks(&batch).await.unwrap()[0];
    assert_eq!(chunk.cursor, 10);
    assert_eq!(
        chunk
            .parts
            .iter()
            .map(|x| x.key.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2"]
    );
    assert!(!p.batches.complete_chunk(&batch, 0, "b").await.unwrap());
    assert!(p.batches.complete_chunk(&batch, 0, "a").await.unwrap());
    assert!(
        !p.batches.complete_chunk(&batch, 0, "a").await.unwrap(),
        "counted once"
    );
    assert_eq!(claim(&p, &batch, 0, "c").await, ChunkClaim::Done);
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.chunks_done, 1);

    // A released chunk is claimable at once, and resumes from its cursor.
    assert!(matches!(
        claim(&p, &batch, 1, "d").await,
        ChunkClaim::Claimed { .. }
    ));
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p3", 3, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert!(p.batches.release_chunk(&batch, 1, "d").await.unwrap());
    match claim(&p, &batch, 1, "e").await {
        ChunkClaim::Claimed { chunk, .. } => assert_eq!(chunk.cursor, 3),
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p4", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
}

/// A cancelling batch takes no new claims, but its holders' finished lines still land (they are
/// paid for) and every write tells them to stop; once the cancel's finalizer claims the batch,
/// nothing more lands.
pub async fn a_cancelling_batch_keeps_its_holders_results_and_takes_no_more_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(2), 20, None, now)
        .await
        .unwrap();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    match p
        .batches
        .request_cancel(&batch.tenant, &batch.id, now)
        .await
        .unwrap()
    {
        BatchCancelOutcome::Accepted(b) => assert_eq!(b.status, BatchStatus::Cancelling),
        other => panic!("expected accepted, got {other:?}"),
    }
    assert!(matches!(
        p.batches
            .request_cancel(&batch.tenant, &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::Accepted(_)
    ));
    assert_eq!(
        p.batches
            .request_cancel(&tenant("beta"), &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::NotFound
    );
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("late", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "x", &part("stranger", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(claim(&p, &batch, 1, "b").await, ChunkClaim::Closed);
    let chunks = p.batches.chunks(&batch).await.unwrap();
    assert!(
        chunks[0].is_claimed(now),
        "the claim stays until its holder lets go"
    );
    assert_eq!(chunks[0].cursor, 1, "the finished line was kept");
    let counted = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.counts.completed, 1);
    assert!(p.batches.release_chunk(&batch, 0, "a").await.unwrap());
    let finalize = FinalizeLease {
        token: "f".into(),
        expires_at: now.plus(HOUR),
        outcome: BatchOutcome::Cancelled,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("after", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused,
        "nothing lands once the finalizer may have read the parts"
    );
}

pub async fn finalize_has_one_winner_and_finish_needs_its_token(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    let finalize = |token: &str, until: Timestamp| FinalizeLease {
        token: token.into(),
        expires_at: until,
        outcome: BatchOutcome::Completed,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    let first = finalize("f1", now.plus(Duration::from_secs(1)));
    let claimed = p
        .batches
        .claim_finalize(&batch, &first, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.status, BatchStatus::Finalizing);
    assert_eq!(
        claimed.finalize.as_ref().map(|f| f.token.as_str()),
        Some("f1")
    );
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize("f2", now.plus(HOUR)), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        p.batches
            .request_cancel(&batch.tenant, &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::Finished(_)
    ));
    // The first finalizer's lease ends: a take-over keeps its outcome and file ids.
    p.clock.advance(Duration::from_millis(1500)).await;
    let later = p.clock.now();
    let taken = p
        .batches
        .claim_finalize(&batch, &finalize("f3", later.plus(HOUR)), later)
        .await
        .unwrap()
        .unwrap();
    let held = taken.finalize.unwrap();
    assert_eq!(held.token, "f3");
    assert_eq!(held.output_file_id, first.output_file_id);
    let result = BatchResult {
        outcome: BatchOutcome::Completed,
        counts: RequestCounts {
            total: 10,
            completed: 9,
            failed: 1,
        },
        usage: Usage::default(),
        output_file_id: Some(first.output_file_id.clone()),
        error_file_id: None,
    };
    assert!(
        !p.batches
            .finish(&batch, "f1", &result, later)
            .await
            .unwrap(),
        "stale finalizer"
    );
    assert!(
        p.batches
            .finish(&batch, "f3", &result, later)
            .await
            .unwrap()
    );
    let done = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!(done.counts, result.counts);
    assert_eq!(done.output_file_id, Some(first.output_file_id));
    assert!(done.completed_at.is_some() && done.finalize.is_none());
    assert!(
        !p.batches
            .finish(&batch, "f3", &result, later)
            .await
            .unwrap()
    );
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize("f4", later.plus(HOUR)), later)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn batches_list_newest_first_and_count_only_unfinished(p: Ports) {
    let ids = IdGenerator::new();
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(new_batch(&p, &ids, "alpha", HOUR).await);
    }
    new_batch(&p, &ids, "beta", HOUR).await;
    let now = p.clock.now();
    let errors = BatchErrors {
        data: Vec::new(),
        total: 0,
    };
    p.batches.fail(&made[0], &errors, now).await.unwrap();
    let page = p.batches.list(&tenant("alpha"), 2, None).await.unwrap();
    let listed: Vec<_> = page.items.iter().map(|b| b.id.clone()).collect();
    assert_eq!(listed, vec![made[2].id.clone(), made[1].id.clone()]);
    assert!(page.has_more);
    let rest = p
        .batches
        .list(&tenant("alpha"), 2, Some(&made[1].id))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(!rest.has_more);
    assert_eq!(p.batches.count_active(&tenant("alpha")).await.unwrap(), 2);
    let unfinished = p.batches.unfinished(100).await.unwrap();
    assert!(unfinished.contains(&made[1]) && unfinished.contains(&made[2]));
    assert!(!unfinished.contains(&made[0]));
}

pub async fn an_expired_batch_takes_no_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", Duration::from_secs(1)).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    p.clock.advance(Duration::from_millis(1500)).await;
    assert_eq!(claim(&p, &batch, 0, "late").await, ChunkClaim::Closed);
}

pub async fn keys_are_found_by_hash_until_revoked(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    assert!(p.keys.is_empty().await.unwrap());
    let minted = mint_key(ids.key_id(now), tenant("alpha"), now);
    p.keys.insert(&minted.record).await.unwrap();
    assert!(!p.keys.is_empty().await.unwrap());
    let found = p
        .keys
        .find_by_hash(&hash_key(&minted.secret))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, minted.record);
    assert!(
        p.keys
            .find_by_hash(&hash_key("sk-prism-other"))
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(p.keys.list().await.unwrap().len(), 1);
    assert!(p.keys.revoke(minted.record.id.as_str(), now).await.unwrap());
    assert!(!p.keys.revoke(minted.record.id.as_str(), now).await.unwrap());
    let revoked = p
        .keys
        .find_by_hash(&hash_key(&minted.secret))
        .await
        .unwrap()
        .unwrap();
    assert!(revoked.revoked_at.is_some());
}

/// Expands to one `#[tokio::test]` per contract case, each on fresh ports from `$fresh().await`.
#[macro_export]
macro_rules! port_contract {
    ($fresh:path) => {
        $crate::port_contract!(@cases $fresh;
            created_job_is_pending_and_visible_to_its_tenant_only,
            idempotency_claim_replays_within_its_tenant,
            a_live_lease_keeps_other_claimants_out_and_fences_stale_writes,
            a_released_lease_can_be_claimed_at_once,
            finished_jobs_expire_at_their_retention,
            cancel_moves_unfinished_jobs_once_and_refuses_finished_ones,
            dead_letter_fails_only_unfinished_jobs,
            list_is_newest_first_with_cursor_and_filter,
            reconciler_finds_old_pending_jobs_and_ended_leases,
            queue_delivers_at_least_once_with_visibility,
            delayed_enqueue_is_invisible_until_due,
            keys_are_found_by_hash_until_revoked,
            claim_waits_for_a_scheduled_job_to_fall_due,
            scheduled_jobs_list_apart_from_async_ones_with_their_metadata,
            scheduler_delivers_at_its_time_once_and_never_after_unschedule,
            file_records_belong_to_their_tenant_until_deleted_or_expired,
            file_list_pages_either_way_with_a_purpose_filter,
            blobs_stream_in_and_out_and_a_failed_upload_leaves_nothing,
            batch_plan_and_fail_happen_only_while_validating,
            chunk_claims_fence_checkpoints_and_counts_add_up,
            a_cancelling_batch_keeps_its_holders_results_and_takes_no_more_claims,
            finalize_has_one_winner_and_finish_needs_its_token,
            batches_list_newest_first_and_count_only_unfinished,
            an_expired_batch_takes_no_claims,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contracts::$case($fresh().await).await;
            }
        )*
    };
}

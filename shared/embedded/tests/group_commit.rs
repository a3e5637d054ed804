//! The writer's group commit over a real SQLite file: writes queued together share one
//! transaction, each caller gets its own outcome, and one caller's refused condition or error
//! never undoes another's write. Grouping is forced with the writer's hold-before-commit hook.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prism_core::ids::IdGenerator;
use prism_core::jobs::{Finish, NewJob};
use prism_core::ports::{ClaimOutcome, CreateOutcome, IdempotencyClaim, JobStore, Lease};
use prism_core::{Clock, JobKind, JobStatus, SystemClock, TenantId, Timestamp};
use prism_embedded::{Database, SqliteJobStore, SqliteWorkQueue, WriterConfig};

struct Store {
    db: Database,
    jobs: Arc<SqliteJobStore>,
    hold: PathBuf,
    ids: IdGenerator,
    clock: SystemClock,
    _dir: tempfile::TempDir,
}

fn store(max_group_writes: usize, max_group_bytes: usize) -> Store {
    // Never the time bound: these tests count groups, on machines of any speed.
    store_with(max_group_writes, max_group_bytes, Duration::from_secs(3600))
}

fn store_with(max_group_writes: usize, max_group_bytes: usize, max_group_time: Duration) -> Store {
    let dir = tempfile::tempdir().unwrap();
    let hold = dir.path().join("hold");
    let db = Database::open_with(
        &dir.path().join("g.sqlite3"),
        WriterConfig {
            max_group_writes,
            max_group_bytes,
            max_group_time,
            hold_commit_while: Some(hold.clone()),
            ..WriterConfig::default()
        },
    )
    .unwrap();
    let queue = SqliteWorkQueue::new(db.clone(), Arc::new(SystemClock));
    Store {
        jobs: Arc::new(SqliteJobStore::new(db.clone(), &queue)),
        db,
        hold,
        ids: IdGenerator::new(),
        clock: SystemClock,
        _dir: dir,
    }
}

impl Store {
    fn new_job(&self, body: &'static [u8]) -> NewJob {
        let now = self.clock.now();
        NewJob {
            id: self.ids.job_id(now),
            tenant: TenantId::parse("alpha").unwrap(),
            kind: JobKind::Async,
            endpoint: prism_core::ApiEndpoint::ChatCompletions,
            model: "gpt-group".into(),
            request: Bytes::from_static(body),
            created_at: now,
            scheduled_at: None,
            metadata: None,
            scheduled_job_id: None,
        }
    }

    /// Holds the next group before its commit and waits until it is held.
    async fn hold_next_group(&self) {
        std::fs::write(&self.hold, b"").unwrap();
        let jobs = Arc::clone(&self.jobs);
        let job = self.new_job(b"{}");
        tokio::spawn(async move { jobs.create(&job, None).await.unwrap() });
        wait_for_file(&held_marker(&self.hold)).await;
    }

    /// Lets the held group commit, and every group after it.
    fn release(&self) {
        std::fs::remove_file(held_marker(&self.hold)).unwrap();
        std::fs::remove_file(&self.hold).unwrap();
    }

    /// Waits until `count` more writes than `before` were handed to the writer.
    async fn wait_queued(&self, before: u64, count: u64) {
        while self.db.writer_stats().queued < before + count {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

fn held_marker(hold: &Path) -> PathBuf {
    let mut held = hold.as_os_str().to_owned();
    held.push(".held");
    PathBuf::from(held)
}

async fn wait_for_file(path: &Path) {
    while !path.exists() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn idempotency(key: &str) -> IdempotencyClaim {
    IdempotencyClaim {
        key: key.into(),
        body_hash: "hash".into(),
        expires_at: Timestamp(i64::MAX),
    }
}

/// A job of this model cannot be stored: [`abort_inserts_of`] makes its insert fail.
const DOOMED_MODEL: &str = "gpt-doomed";

/// Makes every insert of a job of `model` fail, with a trigger added over a side connection: a
/// write that errs halfway, after its earlier statements ran.
fn abort_inserts_of(s: &Store, model: &str) {
    let conn = rusqlite::Connection::open(s._dir.path().join("g.sqlite3")).unwrap();
    conn.execute_batch(&format!(
        "CREATE TRIGGER abort_doomed BEFORE INSERT ON jobs WHEN NEW.model = '{model}' \
         BEGIN SELECT RAISE(ABORT, 'doomed'); END;"
    ))
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_condition_or_an_error_in_a_group_rolls_back_no_other_callers_write() {
    let s = store(1024, 16 * 1024 * 1024);
    // A running job whose lease token is "live".
    let running = s.new_job(b"{}");
    s.jobs.create(&running, None).await.unwrap();
    let lease = Lease {
        token: "live".into(),
        expires_at: s.clock.now().plus(Duration::from_secs(60)),
    };
    let claimed = s
        .jobs
        .claim(&running.job_ref(), &lease, s.clock.now())
        .await
        .unwrap();
    assert!(matches!(claimed, ClaimOutcome::Claimed(_)));

    abort_inserts_of(&s, DOOMED_MODEL);
    s.hold_next_group().await;
    let before = s.db.writer_stats();
    // Three callers queue behind the held group, so they share the next one.
    let stale_finish = {
        let (jobs, job) = (Arc::clone(&s.jobs), running.job_ref());
        let now = s.clock.now();
        tokio::spawn(async move {
            let outcome = Finish::Completed {
                result: "{}".into(),
                counted: None,
            };
            jobs.finish(&job, "stale", &outcome, now, now).await
        })
    };
    s.wait_queued(before.queued, 1).await;
    let kept = s.new_job(b"{\"kept\":true}");
    let kept_create = {
        let (jobs, job) = (Arc::clone(&s.jobs), kept.clone());
        tokio::spawn(async move { jobs.create(&job, Some(&idempotency("kept-key"))).await })
    };
    s.wait_queued(before.queued, 2).await;
    // Its idempotency record is written first, then the job's insert is aborted by the trigger,
    // so this caller errs after writing half of what it meant to.
    let mut doomed = s.new_job(b"{}");
    doomed.model = DOOMED_MODEL.into();
    let failing_create = {
        let (jobs, job) = (Arc::clone(&s.jobs), doomed);
        tokio::spawn(async move { jobs.create(&job, Some(&idempotency("lost-key"))).await })
    };
    s.wait_queued(before.queued, 3).await;
    s.release();

    assert!(
        !stale_finish.await.unwrap().unwrap(),
        "a stale token finishes nothing"
    );
    assert_eq!(
        kept_create.await.unwrap().unwrap(),
        CreateOutcome::Created { triggered: true }
    );
    assert!(failing_create.await.unwrap().is_err());
    let after = s.db.writer_stats();
    assert_eq!(
        (after.groups - before.groups, after.writes - before.writes),
        (1, 3),
        "after the held group, one group of the three callers"
    );

    let now = s.clock.now();
    let tenant = TenantId::parse("alpha").unwrap();
    let stored = s.jobs.get(&tenant, &kept.id, now).await.unwrap().unwrap();
    assert_eq!(stored.status, JobStatus::Pending);
    let still = s
        .jobs
        .get(&tenant, &running.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        still.status,
        JobStatus::Running,
        "the refused finish wrote nothing"
    );
    // The failed caller's idempotency record went with its savepoint: the key is unused.
    let fresh = s.new_job(b"{}");
    assert_eq!(
        s.jobs
            .create(&fresh, Some(&idempotency("lost-key")))
            .await
            .unwrap(),
        CreateOutcome::Created { triggered: true }
    );
    // The kept caller's record is there.
    let replay = s.new_job(b"{}");
    assert!(matches!(
        s.jobs
            .create(&replay, Some(&idempotency("kept-key")))
            .await
            .unwrap(),
        CreateOutcome::Replayed { job_id, .. } if job_id == kept.id
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_takes_no_more_writes_or_bytes_than_its_bounds() {
    // Three writes, or 10 KB of them, per group.
    let s = store(3, 10 * 1024);
    s.hold_next_group().await;
    let before = s.db.writer_stats();
    let mut waiting = Vec::new();
    for i in 0..7u64 {
        let jobs = Arc::clone(&s.jobs);
        let job = s.new_job(b"{}");
        waiting.push(tokio::spawn(async move { jobs.create(&job, None).await }));
        s.wait_queued(before.queued, i + 1).await;
    }
    s.release();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    let after = s.db.writer_stats();
    // After the held group: 3 + 3 + 1.
    assert_eq!(after.groups - before.groups, 3);

    // Bodies of 4 KB: two fit under 10 KB with their overhead, a third does not.
    s.hold_next_group().await;
    let before = s.db.writer_stats();
    static BIG: [u8; 4096] = [b' '; 4096];
    let mut waiting = Vec::new();
    for i in 0..4u64 {
        let jobs = Arc::clone(&s.jobs);
        let job = s.new_job(&BIG);
        waiting.push(tokio::spawn(async move { jobs.create(&job, None).await }));
        s.wait_queued(before.queued, i + 1).await;
    }
    s.release();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    let after = s.db.writer_stats();
    // After the held group: 2 + 2.
    assert_eq!(after.groups - before.groups, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_time_is_up_takes_no_write_after_its_first() {
    // A time bound of zero: every group is over as soon as its first write has run.
    let s = store_with(1024, 16 * 1024 * 1024, Duration::ZERO);
    s.hold_next_group().await;
    let before = s.db.writer_stats();
    let mut waiting = Vec::new();
    for i in 0..4u64 {
        let jobs = Arc::clone(&s.jobs);
        let job = s.new_job(b"{}");
        waiting.push(tokio::spawn(async move { jobs.create(&job, None).await }));
        s.wait_queued(before.queued, i + 1).await;
    }
    s.release();
    for w in waiting {
        w.await.unwrap().unwrap();
    }
    let after = s.db.writer_stats();
    assert_eq!(
        (after.groups - before.groups, after.writes - before.writes),
        (4, 4),
        "after the held group, one group per write"
    );
}

//! The single SQLite writer and its group commit: every write waiting while a transaction runs
//! joins it (up to a count, a byte and a time bound), each in its own savepoint so that one
//! caller's error or refused condition never undoes another's, and every caller is answered only
//! after the one `COMMIT` that made its write durable. Between groups, when the checkpoint
//! thread asks, the writer runs the short `PASSIVE` checkpoint that lets the WAL restart. Also
//! the writer's timings (queue wait, lock wait, statements, commit, checkpoints), which are what
//! `BENCHMARKS.md` reads the submit tail from.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rusqlite::Connection;

type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// A write run on the writer thread; `None` when its transaction could not begin.
type Run = Box<dyn FnOnce(Option<&Connection>) -> Reply + Send>;

/// One caller's write, as queued for the writer.
pub(crate) struct WriteCmd {
    pub(crate) run: Run,
    /// What the write is expected to put in the WAL, roughly: the group's byte bound counts it.
    pub(crate) bytes: usize,
    pub(crate) queued_at: Instant,
}

/// How large a group commit may grow.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Writes in one transaction at most.
    pub max_group_writes: usize,
    /// Estimated bytes written by one transaction at most (a single larger write still runs,
    /// alone).
    pub max_group_bytes: usize,
    /// How long a group keeps taking writes once its transaction has begun; then it commits, so
    /// no write waits behind one long transaction. The first write always runs.
    pub max_group_time: Duration,
    /// Crash tests only: while this file exists, a group that has run its statements waits
    /// before its `COMMIT` (having written `<file>.held`), so a test can kill the process
    /// inside a group commit.
    pub hold_commit_while: Option<PathBuf>,
    /// The writer thread's nice value (0: leave it as inherited). Every write waits on this one
    /// thread, and on 2 cores it spent about as long runnable but waiting for a CPU, behind the
    /// runtime's workers, as running (BENCHMARKS.md, issue 12, `s7b`); a lower value lets it
    /// preempt them when a write arrives. Off by default until a quiet machine shows it helps
    /// the tail (a loaded one could not tell). Lowering it needs `CAP_SYS_NICE`; without it the
    /// writer runs at the inherited priority.
    pub thread_nice: i32,
    /// A WAL this many frames long (pages of 4 KiB) is started over: the writer is asked to copy
    /// what the checkpoint thread's last pass left, between two groups, and writes queue behind
    /// that copy and its two fsyncs. A longer WAL asks for it less often.
    pub wal_restart_frames: u32,
}

/// See [`WriterConfig::thread_nice`].
pub const DEFAULT_WRITER_NICE: i32 = 0;
/// See [`WriterConfig::wal_restart_frames`]: 8 MiB. 8,192 (32 MiB) halves the writer's
/// checkpoints, yet its submit p99 was worse than 2,048's in 8 of 10 side-by-side runs.
pub const DEFAULT_WAL_RESTART_FRAMES: u32 = 2048;

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_group_writes: 1024,
            max_group_bytes: 16 * 1024 * 1024,
            max_group_time: Duration::from_millis(2),
            hold_commit_while: None,
            thread_nice: DEFAULT_WRITER_NICE,
            wal_restart_frames: DEFAULT_WAL_RESTART_FRAMES,
        }
    }
}

/// Counters of the writer since the database was opened.
#[derive(Debug, Default)]
pub(crate) struct WriterCounters {
    queued: AtomicU64,
    groups: AtomicU64,
    writes: AtomicU64,
    checkpoints: AtomicU64,
    /// Set by the checkpoint thread once it has copied most of a large WAL: the writer then
    /// copies the rest between two groups, so that its next transaction starts the WAL over.
    pub(crate) restart_wanted: AtomicBool,
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterStats {
    /// Writes handed to the writer.
    pub queued: u64,
    /// Transactions committed (or attempted).
    pub groups: u64,
    /// Writes run in them.
    pub writes: u64,
    /// `PASSIVE` checkpoints the writer ran between groups.
    pub checkpoints: u64,
}

impl WriterCounters {
    pub(crate) fn queued(&self) {
        self.queued.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            queued: self.queued.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
        }
    }
}

/// A group whose oldest write waited or ran this long in all is logged (target
/// `prism_embedded::writer`, debug) with where the time went.
const SLOW_GROUP: Duration = Duration::from_millis(2);
/// A summary of the writer's timings is logged this often (debug) while it is busy.
const SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// The retry policy of a connection that finds the database locked (nothing but the writer takes
/// the write lock, so this is a safety net): SQLite's own handler sleeps 1, 2, 5, 10, 15, 20, 25 ms and
/// so on, which turns a lock held for a fraction of a millisecond into a stall of many
/// milliseconds. This one retries every 50 µs for the first 10 ms, then every millisecond, and
/// gives up after about 10 s as `busy_timeout` did.
pub(crate) fn retry_when_busy(attempts: i32) -> bool {
    const FINE: i32 = 200;
    if attempts < FINE {
        std::thread::sleep(Duration::from_micros(50));
        true
    } else if attempts < FINE + 10_000 {
        std::thread::sleep(Duration::from_millis(1));
        true
    } else {
        false
    }
}

/// Where one group's time went.
#[derive(Debug, Default, Clone, Copy)]
struct GroupTimes {
    /// From the oldest write's queueing to the group's start.
    queued: Duration,
    /// `BEGIN IMMEDIATE`: waiting for the write lock.
    begin: Duration,
    /// The writes' statements.
    statements: Duration,
    /// `COMMIT`: writing the WAL frames.
    commit: Duration,
}

impl GroupTimes {
    fn total(&self) -> Duration {
        self.queued + self.begin + self.statements + self.commit
    }
}

/// Maxima and sums over a summary period.
#[derive(Default)]
struct Summary {
    groups: u64,
    writes: u64,
    slow: u64,
    max: GroupTimes,
    max_group: usize,
}

impl Summary {
    fn add(&mut self, times: GroupTimes, size: usize) {
        self.groups += 1;
        self.writes += size as u64;
        if times.total() >= SLOW_GROUP {
            self.slow += 1;
        }
        self.max.queued = self.max.queued.max(times.queued);
        self.max.begin = self.max.begin.max(times.begin);
        self.max.statements = self.max.statements.max(times.statements);
        self.max.commit = self.max.commit.max(times.commit);
        self.max_group = self.max_group.max(size);
    }
}

/// Whether the group may take one more write: within its count bound, and its statements have
/// not yet run for its time bound. The byte bound is checked against the write itself.
fn group_takes(config: &WriterConfig, size: usize, began: Instant) -> bool {
    size < config.max_group_writes.max(1) && began.elapsed() < config.max_group_time
}

/// The `PASSIVE` checkpoint the writer runs between groups when the checkpoint thread asks: it
/// copies the few frames committed since that thread's last pass, so the WAL is wholly in the
/// database and the writer's next `BEGIN` starts it over (at most `journal_size_limit` kept).
/// It never waits for a lock.
fn checkpoint_between_groups(conn: &Connection, counters: &WriterCounters) {
    if !counters.restart_wanted.swap(false, Ordering::Relaxed) {
        return;
    }
    let started = Instant::now();
    let outcome = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
        Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
    });
    counters.checkpoints.fetch_add(1, Ordering::Relaxed);
    let (frames, copied) = match outcome {
        Ok(counts) => counts,
        Err(error) => {
            tracing::debug!(target: "prism_embedded::writer", %error, "writer checkpoint refused");
            (-1, -1)
        }
    };
    // Refused (the checkpoint thread holds the checkpoint lock): after the next group. Partly
    // done (a reader still reads older frames): the checkpoint thread asks again on its next
    // pass, rather than the writer paying a checkpoint after every group meanwhile.
    if frames < 0 {
        counters.restart_wanted.store(true, Ordering::Relaxed);
    }
    tracing::debug!(
        target: "prism_embedded::writer",
        took_us = started.elapsed().as_micros() as u64,
        frames,
        copied,
        "writer checkpoint"
    );
}

/// Crash tests: holds the group before its commit while the configured file exists.
fn hold_before_commit(config: &WriterConfig, size: usize) {
    let Some(path) = &config.hold_commit_while else {
        return;
    };
    if !path.exists() {
        return;
    }
    let mut held = path.as_os_str().to_owned();
    held.push(".held");
    if let Err(error) = std::fs::write(PathBuf::from(held), size.to_string()) {
        tracing::warn!(%error, "could not mark a held commit");
    }
    while path.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Gives the calling thread (on Linux, `PRIO_PROCESS` of 0 is the thread, not the process) the
/// configured nice value, if it is allowed to.
fn raise_thread_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    match rustix::process::setpriority_process(None, nice) {
        Ok(()) => {
            tracing::debug!(target: "prism_embedded::writer", nice, "writer thread priority set")
        }
        Err(error) => tracing::info!(
            %error,
            nice,
            "could not raise the database writer's priority; it runs at the inherited one"
        ),
    }
}

pub(crate) fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<WriteCmd>,
    config: WriterConfig,
    counters: Arc<WriterCounters>,
) {
    raise_thread_priority(config.thread_nice);
    let mut carried: Option<WriteCmd> = None;
    let mut summary = Summary::default();
    let mut summary_since = Instant::now();
    loop {
        let first = match carried.take() {
            Some(cmd) => cmd,
            None => match rx.recv() {
                Ok(cmd) => cmd,
                Err(_) => break,
            },
        };
        let started = Instant::now();
        let mut times = GroupTimes {
            queued: started.saturating_duration_since(first.queued_at),
            ..GroupTimes::default()
        };
        counters.groups.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            counters.writes.fetch_add(1, Ordering::Relaxed);
            (first.run)(None)(Err(e.to_string()));
            continue;
        }
        let began = Instant::now();
        times.begin = began - started;
        // Writes that arrive while the group runs join it, within its bounds.
        let mut bytes = first.bytes;
        let mut replies: Vec<Reply> = vec![(first.run)(Some(&conn))];
        while group_takes(&config, replies.len(), began) {
            let Ok(cmd) = rx.try_recv() else { break };
            if bytes.saturating_add(cmd.bytes) > config.max_group_bytes {
                carried = Some(cmd);
                break;
            }
            bytes += cmd.bytes;
            replies.push((cmd.run)(Some(&conn)));
        }
        let size = replies.len();
        counters.writes.fetch_add(size as u64, Ordering::Relaxed);
        let ran = Instant::now();
        times.statements = ran - began;
        hold_before_commit(&config, size);
        let committing = Instant::now();
        let commit = run_cached(&conn, "COMMIT").map_err(|e| e.to_string());
        if commit.is_err() {
            let _ = run_cached(&conn, "ROLLBACK");
        }
        times.commit = committing.elapsed();
        for reply in replies {
            reply(commit.clone());
        }
        checkpoint_between_groups(&conn, &counters);
        if times.total() >= SLOW_GROUP {
            tracing::debug!(
                target: "prism_embedded::writer",
                writes = size,
                queued_us = times.queued.as_micros() as u64,
                begin_us = times.begin.as_micros() as u64,
                statements_us = times.statements.as_micros() as u64,
                commit_us = times.commit.as_micros() as u64,
                "slow group commit"
            );
        }
        summary.add(times, size);
        if summary_since.elapsed() >= SUMMARY_EVERY {
            let s = std::mem::take(&mut summary);
            tracing::debug!(
                target: "prism_embedded::writer",
                groups = s.groups,
                writes = s.writes,
                slow_groups = s.slow,
                largest_group = s.max_group,
                max_queued_us = s.max.queued.as_micros() as u64,
                max_begin_us = s.max.begin.as_micros() as u64,
                max_statements_us = s.max.statements.as_micros() as u64,
                max_commit_us = s.max.commit.as_micros() as u64,
                "writer summary"
            );
            summary_since = Instant::now();
        }
    }
}

/// Runs `op` in a savepoint of the current transaction: a failing `op` is rolled back to it
/// without touching what the other writes of the group did.
pub(crate) fn run_in_savepoint<T>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    run_cached(conn, "SAVEPOINT op")?;
    let result = op(conn);
    if result.is_err() {
        run_cached(conn, "ROLLBACK TO op")?;
    }
    run_cached(conn, "RELEASE op")?;
    result
}

/// Runs one transaction-control statement from the connection's statement cache: every write
/// runs two and every group two more, and parsing each of them again cost about half a percent
/// of prism's CPU under load (perf, BENCHMARKS.md issue 12).
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

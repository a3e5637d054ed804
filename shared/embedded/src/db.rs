//! The SQLite database: schema, the writer thread (group commit, in `writer`; the only
//! connection that ever takes the write lock), the checkpoint thread, and a pool of read-only
//! connections. Crash model: the process may die at any
//! instruction, the disk survives; WAL with `synchronous=NORMAL` loses no committed transaction
//! in that model.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use prism_core::StoreError;
use rusqlite::{Connection, OpenFlags};
use tokio::sync::oneshot;

use crate::writer::{
    WriteCmd, WriterConfig, WriterCounters, WriterStats, retry_when_busy, run_in_savepoint,
    writer_loop,
};

const MAX_IDLE_READERS: usize = 16;
/// What a write is counted as toward the group's byte bound when its caller gives no size: a
/// row update or two.
const SMALL_WRITE_BYTES: usize = 512;

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    tenant           TEXT NOT NULL,
    kind             TEXT NOT NULL,
    status           TEXT NOT NULL,
    model            TEXT NOT NULL,
    request          BLOB NOT NULL,
    result           TEXT,
    error            TEXT,
    created_at       INTEGER NOT NULL,
    scheduled_at     INTEGER,
    metadata         TEXT,
    started_at       INTEGER,
    completed_at     INTEGER,
    expires_at       INTEGER,
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    -- The row is its own queue entry: NULL when no message is waiting or in flight.
    queue_visible_at INTEGER,
    queue_receipt    TEXT,
    queue_receives   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_tenant ON jobs (tenant, kind, id);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs (queue_visible_at) WHERE queue_visible_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (status) WHERE status IN ('pending', 'running');
CREATE INDEX IF NOT EXISTS jobs_expiry ON jobs (expires_at) WHERE expires_at IS NOT NULL;

-- A streamed background response's events, as recorded by its worker (see response_events).
CREATE TABLE IF NOT EXISTS response_events (
    job_id TEXT NOT NULL,
    seq    INTEGER NOT NULL,
    event  TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS idempotency_keys (
    tenant     TEXT NOT NULL,
    key        TEXT NOT NULL,
    body_hash  TEXT NOT NULL,
    job_id     TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
);
CREATE INDEX IF NOT EXISTS idempotency_expiry ON idempotency_keys (expires_at);

CREATE TABLE IF NOT EXISTS files (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    purpose    TEXT NOT NULL,
    filename   TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER
);
CREATE INDEX IF NOT EXISTS files_by_tenant ON files (tenant, id);
CREATE INDEX IF NOT EXISTS files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS uploads (
    id                 TEXT PRIMARY KEY,
    tenant             TEXT NOT NULL,
    filename           TEXT NOT NULL,
    purpose            TEXT NOT NULL,
    bytes              INTEGER NOT NULL,
    mime_type          TEXT NOT NULL,
    created_at         INTEGER NOT NULL,
    expires_at         INTEGER NOT NULL,
    file_expires_after INTEGER,
    status             TEXT NOT NULL,
    claim_file_id      TEXT,
    claim_part_ids     TEXT,
    claim_md5          TEXT
);
CREATE INDEX IF NOT EXISTS uploads_expiry ON uploads (expires_at);

CREATE TABLE IF NOT EXISTS upload_parts (
    id         TEXT PRIMARY KEY,
    upload_id  TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    bytes      INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS upload_parts_by_upload ON upload_parts (upload_id);

CREATE TABLE IF NOT EXISTS batches (
    id                   TEXT PRIMARY KEY,
    tenant               TEXT NOT NULL,
    status               TEXT NOT NULL,
    input_file_id        TEXT NOT NULL,
    endpoint             TEXT NOT NULL,
    completion_window    TEXT NOT NULL,
    metadata             TEXT,
    output_expires_after INTEGER,
    created_at           INTEGER NOT NULL,
    expires_at           INTEGER NOT NULL,
    in_progress_at       INTEGER,
    finalizing_at        INTEGER,
    completed_at         INTEGER,
    failed_at            INTEGER,
    expired_at           INTEGER,
    cancelling_at        INTEGER,
    cancelled_at         INTEGER,
    total                INTEGER NOT NULL DEFAULT 0,
    completed            INTEGER NOT NULL DEFAULT 0,
    failed               INTEGER NOT NULL DEFAULT 0,
    usage                TEXT,
    errors               TEXT,
    output_file_id       TEXT,
    error_file_id        TEXT,
    model                TEXT,
    chunks               INTEGER NOT NULL DEFAULT 0,
    chunks_done          INTEGER NOT NULL DEFAULT 0,
    -- The finalizer's lease, outcome and file ids while finalizing (JSON).
    finalize             TEXT,
    -- Once finished: usage per model and tier (JSON), what the batch's cost is priced from.
    usage_by_model       TEXT
);
CREATE INDEX IF NOT EXISTS batches_by_tenant ON batches (tenant, id);
CREATE INDEX IF NOT EXISTS batches_unfinished ON batches (status)
    WHERE status NOT IN ('failed', 'completed', 'expired', 'cancelled');

CREATE TABLE IF NOT EXISTS batch_chunks (
    batch_id         TEXT NOT NULL,
    idx              INTEGER NOT NULL,
    start            INTEGER NOT NULL,
    "end"            INTEGER NOT NULL,
    lines            INTEGER NOT NULL,
    cursor           INTEGER NOT NULL DEFAULT 0,
    parts            TEXT NOT NULL DEFAULT '[]',
    done             INTEGER NOT NULL DEFAULT 0,
    lease_token      TEXT,
    lease_expires_at INTEGER,
    -- The lines a native group runs (ranges; NULL: planned before this was recorded).
    native           TEXT,
    PRIMARY KEY (batch_id, idx)
);

-- Recurring schedules; their runs are jobs rows with scheduled_job_id set. Every write is
-- conditional on version.
CREATE TABLE IF NOT EXISTS recurring_schedules (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    status        TEXT NOT NULL,
    model         TEXT NOT NULL,
    request       BLOB NOT NULL,
    metadata      TEXT,
    cron          TEXT NOT NULL,
    timezone      TEXT NOT NULL,
    start_at      INTEGER,
    end_at        INTEGER,
    max_runs      INTEGER,
    overlap       TEXT NOT NULL,
    catch_up      TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    next_run_at   INTEGER,
    last_run_at   INTEGER,
    last_fire_at  INTEGER,
    run_count     INTEGER NOT NULL DEFAULT 0,
    skipped_count INTEGER NOT NULL DEFAULT 0,
    ended_at      INTEGER,
    version       INTEGER NOT NULL,
    endpoint      TEXT
);
CREATE INDEX IF NOT EXISTS recurring_by_tenant ON recurring_schedules (tenant, id);

-- Queue entries for work that is not a job row (batch stages; webhook events, the event id in
-- batch_id; firings of recurring schedules: kind 'fire', the schedule id in batch_id and the
-- fire time in chunk), one row per distinct item.
CREATE TABLE IF NOT EXISTS work_items (
    key        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    tenant     TEXT NOT NULL,
    batch_id   TEXT NOT NULL,
    chunk      INTEGER,
    visible_at INTEGER NOT NULL,
    receipt    TEXT,
    receives   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS work_items_visible ON work_items (visible_at);

-- Webhooks: endpoints, the event outbox (written with the terminal transition it announces),
-- each event's state per endpoint, and every attempt.
CREATE TABLE IF NOT EXISTS webhook_endpoints (
    id            TEXT PRIMARY KEY,
    tenant        TEXT NOT NULL,
    url           TEXT NOT NULL,
    events        TEXT NOT NULL,
    description   TEXT,
    status        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    secrets       TEXT NOT NULL,
    failing_since INTEGER,
    disabled_at   INTEGER
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_by_tenant ON webhook_endpoints (tenant, id);

CREATE TABLE IF NOT EXISTS webhook_events (
    id         TEXT PRIMARY KEY,
    tenant     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    subject    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    endpoint   TEXT,
    settled    INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS webhook_deliveries (
    event_id         TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    attempts         INTEGER NOT NULL,
    first_attempt_at INTEGER,
    next_at          INTEGER,
    outcome          TEXT NOT NULL,
    PRIMARY KEY (event_id, endpoint_id)
);

CREATE TABLE IF NOT EXISTS webhook_attempts (
    id          TEXT PRIMARY KEY,
    tenant      TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms  INTEGER NOT NULL,
    error       TEXT,
    succeeded   INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS webhook_attempts_by_endpoint ON webhook_attempts (endpoint_id, id);

-- Usage per tenant, UTC day, kind of work, model and tier, added to in the write that finishes
-- a job or a batch (crate::usage); kept past the work's own retention.
CREATE TABLE IF NOT EXISTS usage_counters (
    tenant           TEXT NOT NULL,
    day              INTEGER NOT NULL,
    kind             TEXT NOT NULL,
    model            TEXT NOT NULL,
    tier             TEXT NOT NULL,
    requests         INTEGER NOT NULL,
    input_tokens     INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    total_tokens     INTEGER NOT NULL,
    PRIMARY KEY (tenant, day, kind, model, tier)
);

CREATE TABLE IF NOT EXISTS api_keys (
    id             TEXT PRIMARY KEY,
    tenant         TEXT NOT NULL,
    hash           TEXT NOT NULL UNIQUE,
    display_prefix TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    revoked_at     INTEGER
);
"#;

struct Inner {
    path: PathBuf,
    writer: Mutex<mpsc::Sender<WriteCmd>>,
    readers: Mutex<Vec<Connection>>,
    counters: Arc<WriterCounters>,
}

/// A handle on the database, cheap to clone.
#[derive(Clone)]
pub struct Database {
    inner: Arc<Inner>,
}

pub(crate) fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// After a checkpoint lets the WAL restart, SQLite cuts the file back to this size; without it
/// the WAL keeps its high-water mark forever (hundreds of MiB after a burst of jobs).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

fn configure(conn: &mut Connection) -> rusqlite::Result<()> {
    // In place of `busy_timeout`'s escalating sleeps (see `retry_when_busy`).
    conn.busy_handler(Some(retry_when_busy))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Columns added after a release, for data directories created before them.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("jobs", "scheduled_at", "INTEGER"),
    ("jobs", "metadata", "TEXT"),
    ("jobs", "scheduled_job_id", "TEXT"),
    ("batches", "usage_by_model", "TEXT"),
    ("jobs", "endpoint", "TEXT"),
    // The W3C traceparent of whoever queued the job or item (prism_core::trace_context).
    ("jobs", "trace_context", "TEXT"),
    ("work_items", "trace_context", "TEXT"),
    // Native groups' counts as their providers last reported them (JSON: group -> counts).
    ("batches", "native_counts", "TEXT"),
    // The endpoint a recurring schedule's runs call; NULL (older rows) is chat completions.
    ("recurring_schedules", "endpoint", "TEXT"),
    // The lines of a chunk a native group runs, fixed at planning; NULL (older rows): routed
    // by the configuration.
    ("batch_chunks", "native", "TEXT"),
];

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, ty) in ADDED_COLUMNS {
        let exists: bool = conn
            .prepare(&format!(
                "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
            ))?
            .exists([column])?;
        if !exists {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

impl Database {
    /// Opens (creating if needed) the database at `path` and starts its writer thread, with the
    /// default group bounds.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, WriterConfig::default())
    }

    /// [`Database::open`] with the writer's group bounds given.
    pub fn open_with(path: &Path, writer: WriterConfig) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(unavailable)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        configure(&mut conn).map_err(unavailable)?;
        conn.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate(&conn).map_err(unavailable)?;
        conn.execute_batch(
            "CREATE INDEX IF NOT EXISTS jobs_by_schedule ON jobs (tenant, scheduled_job_id, id) \
             WHERE scheduled_job_id IS NOT NULL",
        )
        .map_err(unavailable)?;
        // No commit checkpoints on its own: checkpoints (which copy the WAL into the database and
        // fsync) run on their own thread, and the writer finishes them between groups.
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        let mut checkpointer = Connection::open(path).map_err(unavailable)?;
        configure(&mut checkpointer).map_err(unavailable)?;
        checkpointer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(unavailable)?;
        let restart_frames = i64::from(writer.wal_restart_frames.max(1));
        let (tx, rx) = mpsc::channel::<WriteCmd>();
        let counters = Arc::new(WriterCounters::default());
        let writer_counters = Arc::clone(&counters);
        std::thread::Builder::new()
            .name("prism-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, writer, writer_counters))
            .map_err(unavailable)?;
        let inner = Arc::new(Inner {
            path: path.to_owned(),
            writer: Mutex::new(tx),
            readers: Mutex::new(Vec::new()),
            counters,
        });
        let alive = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("prism-sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, alive, restart_frames))
            .map_err(unavailable)?;
        Ok(Self { inner })
    }

    /// What the writer has done since the database was opened.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.counters.stats()
    }

    /// Runs `op` inside the writer's current transaction and answers once that transaction has
    /// committed. A failing `op` is rolled back to its own savepoint without touching the others.
    pub(crate) async fn write<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        self.write_sized(SMALL_WRITE_BYTES, op).await
    }

    /// [`Database::write`] of a write expected to add about `bytes` to the WAL (a request body,
    /// a result), which the group's byte bound counts.
    pub(crate) async fn write_sized<T, F>(&self, bytes: usize, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel::<Result<T, StoreError>>();
        let run = Box::new(
            move |conn: Option<&Connection>| -> Box<dyn FnOnce(Result<(), String>) + Send> {
                let Some(conn) = conn else {
                    return Box::new(move |outcome: Result<(), String>| {
                        let _ = tx.send(Err(StoreError::Unavailable(
                            outcome
                                .err()
                                .unwrap_or_else(|| "transaction did not start".into()),
                        )));
                    });
                };
                let result = run_in_savepoint(conn, op);
                Box::new(move |commit: Result<(), String>| {
                    let answer = match commit {
                        Ok(()) => result.map_err(unavailable),
                        Err(e) => Err(StoreError::Unavailable(e)),
                    };
                    let _ = tx.send(answer);
                })
            },
        );
        let cmd = WriteCmd {
            run,
            bytes: bytes.saturating_add(SMALL_WRITE_BYTES),
            queued_at: Instant::now(),
        };
        self.inner.counters.queued();
        self.inner
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?
            .send(cmd)
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the database writer dropped a write".into()))?
    }

    /// Runs `op` on a read connection off the async runtime.
    pub(crate) async fn read<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner.readers.lock().ok().and_then(|mut pool| pool.pop());
            let conn = match pooled {
                Some(conn) => conn,
                None => open_reader(&inner.path).map_err(unavailable)?,
            };
            let result = op(&conn).map_err(unavailable);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < MAX_IDLE_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(unavailable)?
    }
}

const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// Copies committed WAL frames into the database (`PASSIVE`: never takes the write lock and never
/// waits for one), until the database handle is dropped. The bulk of the copying and its fsyncs
/// happen here, beside the writer. Under steady traffic this pass alone never catches up (the
/// writer keeps appending), so the WAL could never start over and would only grow; past
/// `restart_frames` ([`WriterConfig::wal_restart_frames`]) it asks the writer to copy the rest
/// between two groups (`writer::checkpoint_between_groups`), after which the writer's next transaction starts the
/// WAL over. Nothing truncates the WAL on the hot path: `journal_size_limit` bounds the file
/// when it starts over.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<Inner>, restart_frames: i64) {
    loop {
        std::thread::sleep(CHECKPOINT_EVERY);
        let Some(inner) = alive.upgrade() else { return };
        let started = Instant::now();
        let passive = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        });
        match passive {
            Ok((frames, copied)) => {
                tracing::debug!(
                    target: "prism_embedded::writer",
                    took_us = started.elapsed().as_micros() as u64,
                    frames,
                    copied,
                    "passive checkpoint"
                );
                if frames >= restart_frames {
                    inner
                        .counters
                        .restart_wanted
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Err(error) => tracing::warn!(%error, "WAL checkpoint failed; will retry"),
        }
    }
}

fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    configure(&mut conn)?;
    // Belt and braces on a read-only handle: nothing it runs may write, upgrade to a write
    // transaction or checkpoint; the writer is the only connection that takes the write lock.
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    Ok(conn)
}

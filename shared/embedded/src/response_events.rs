//! A streamed background response's recorded events in SQLite: one row per event, keyed by the
//! job and its sequence number, written only while the worker's lease holds and purged with the
//! job.

use prism_core::StoreError;
use prism_core::jobs::JobRef;
use prism_core::responses::events::RecordedEvent;
use rusqlite::{Connection, params};

use crate::db::Database;
use crate::jobs::held_by;

pub(crate) async fn append(
    db: &Database,
    job: &JobRef,
    token: &str,
    events: &[RecordedEvent],
) -> Result<bool, StoreError> {
    let (id, token, events) = (job.id.clone(), token.to_owned(), events.to_vec());
    let bytes = events.iter().map(|e| e.text.len()).sum();
    db.write_sized(bytes, move |conn| {
        if !held_by(conn, id.as_str(), &token)? {
            return Ok(false);
        }
        let mut insert = conn.prepare_cached(
            "INSERT OR IGNORE INTO response_events (job_id, seq, event) VALUES (?1, ?2, ?3)",
        )?;
        for event in &events {
            let seq = i64::try_from(event.sequence_number).unwrap_or(i64::MAX);
            insert.execute(params![id.as_str(), seq, event.text])?;
        }
        Ok(true)
    })
    .await
}

pub(crate) async fn after(
    db: &Database,
    job: &JobRef,
    after: Option<u64>,
    limit: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let id = job.id.clone();
    let after = after.map_or(-1, |a| i64::try_from(a).unwrap_or(i64::MAX));
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.read(move |conn| {
        conn.prepare_cached(
            "SELECT seq, event FROM response_events WHERE job_id = ?1 AND seq > ?2 \
             ORDER BY seq LIMIT ?3",
        )?
        .query_map(params![id.as_str(), after, limit], |r| {
            Ok(RecordedEvent {
                sequence_number: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                text: r.get(1)?,
            })
        })?
        .collect()
    })
    .await
}

/// Deletes the events of the jobs the same purge is about to delete.
pub(crate) fn purge_for_expired_jobs(
    conn: &Connection,
    now: i64,
    limit: i64,
) -> rusqlite::Result<usize> {
    conn.execute(
        "DELETE FROM response_events WHERE job_id IN \
         (SELECT id FROM jobs WHERE kind = 'response' AND expires_at IS NOT NULL \
          AND expires_at <= ?1 LIMIT ?2)",
        params![now, limit],
    )
}

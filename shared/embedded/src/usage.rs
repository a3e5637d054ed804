//! The usage counters' table: added to inside the transaction that finishes a job or a batch
//! (so a refused, redelivered finish adds nothing), read per tenant and range of days, and
//! trimmed past their retention (`COUNTER_RETENTION`) by the jobs' purge.

use prism_core::batches::Usage;
use prism_core::pricing::Tier;
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{COUNTER_RETENTION, Day, UsageCount};
use prism_core::{StoreError, TenantId, Timestamp};
use rusqlite::{Connection, params};

use crate::db::Database;

fn n(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn u(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Adds `counts` to the tenant's counters; call it inside the finishing write.
pub(crate) fn add(
    conn: &Connection,
    tenant: &TenantId,
    counts: &[UsageCount],
) -> rusqlite::Result<()> {
    let mut upsert = conn.prepare_cached(
        "INSERT INTO usage_counters (tenant, day, kind, model, tier, requests, input_tokens, \
         cached_tokens, output_tokens, reasoning_tokens, total_tokens) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) \
         ON CONFLICT (tenant, day, kind, model, tier) DO UPDATE SET \
         requests = requests + excluded.requests, \
         input_tokens = input_tokens + excluded.input_tokens, \
         cached_tokens = cached_tokens + excluded.cached_tokens, \
         output_tokens = output_tokens + excluded.output_tokens, \
         reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens, \
         total_tokens = total_tokens + excluded.total_tokens",
    )?;
    for c in counts {
        upsert.execute(params![
            tenant.as_str(),
            c.day.0,
            c.kind.as_str(),
            c.model,
            c.tier.as_str(),
            n(c.requests),
            n(c.usage.input_tokens),
            n(c.usage.cached_tokens),
            n(c.usage.output_tokens),
            n(c.usage.reasoning_tokens),
            n(c.usage.total_tokens),
        ])?;
    }
    Ok(())
}

/// The tenant's counters of `kinds` on days `from..=to`.
pub(crate) async fn read(
    db: &Database,
    tenant: &TenantId,
    from: Day,
    to: Day,
    kinds: &'static [UsageKind],
) -> Result<Vec<UsageCount>, StoreError> {
    let tenant = tenant.clone();
    db.read(move |conn| {
        let mut query = conn.prepare_cached(
            "SELECT day, kind, model, tier, requests, input_tokens, cached_tokens, output_tokens, \
             reasoning_tokens, total_tokens FROM usage_counters \
             WHERE tenant = ?1 AND day >= ?2 AND day <= ?3",
        )?;
        let rows = query.query_map(params![tenant.as_str(), from.0, to.0], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                [
                    r.get::<_, i64>(4)?,
                    r.get::<_, i64>(5)?,
                    r.get::<_, i64>(6)?,
                    r.get::<_, i64>(7)?,
                    r.get::<_, i64>(8)?,
                    r.get::<_, i64>(9)?,
                ],
            ))
        })?;
        let mut counts = Vec::new();
        for row in rows {
            let (day, kind, model, tier, [requests, input, cached, output, reasoning, total]) =
                row?;
            // A row this version cannot read (a kind or tier it does not know) is skipped.
            let (Some(kind), Some(tier)) = (UsageKind::parse(&kind), Tier::parse(&tier)) else {
                continue;
            };
            if !kinds.contains(&kind) {
                continue;
            }
            counts.push(UsageCount {
                day: Day(day),
                kind,
                model,
                tier,
                requests: u(requests),
                usage: Usage {
                    input_tokens: u(input),
                    cached_tokens: u(cached),
                    output_tokens: u(output),
                    reasoning_tokens: u(reasoning),
                    total_tokens: u(total),
                },
            });
        }
        Ok(counts)
    })
    .await
}

/// Deletes counters whose retention has passed (at most `limit` rows).
pub(crate) fn purge(conn: &Connection, now: Timestamp, limit: i64) -> rusqlite::Result<usize> {
    // A day's counters are kept until COUNTER_RETENTION after it ends (`Day::kept_until`).
    let oldest_kept = Day::of(now.minus(COUNTER_RETENTION)).0;
    conn.execute(
        "DELETE FROM usage_counters WHERE rowid IN \
         (SELECT rowid FROM usage_counters WHERE day < ?1 LIMIT ?2)",
        params![oldest_kept, limit],
    )
}

//! How long a worker invocation may run: the Lambda's own deadline, less time to settle.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Left between the worker's deadline and the Lambda's, so a run that stops at its deadline
/// still has time to release its lease, change visibilities and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// Lambda's longest timeout: no real invocation has more time than this, and none starts with a
/// deadline further in the past than this either.
pub const MAX_INVOCATION: Duration = Duration::from_secs(15 * 60);

/// The worker's deadline for an invocation whose context deadline is `deadline_ms`
/// (milliseconds since the Unix epoch): the time remaining less [`DEADLINE_MARGIN`], and never
/// in the past.
///
/// A deadline more than [`MAX_INVOCATION`] in the past is no deadline at all: Lambda never sends
/// one, but runtime emulators do (cargo-lambda's is a fixed `600000`, ten minutes after 1970).
/// Taken at its word it would make every worker stop at once and hand its work back forever, so
/// the invocation gets Lambda's longest run instead.
pub fn worker_deadline(deadline_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let max_ms = u64::try_from(MAX_INVOCATION.as_millis()).unwrap_or(u64::MAX);
    let remaining = if deadline_ms.saturating_add(max_ms) < now_ms {
        MAX_INVOCATION
    } else {
        Duration::from_millis(deadline_ms.saturating_sub(now_ms))
    };
    now + remaining.saturating_sub(DEADLINE_MARGIN)
}

//! How long a worker invocation may run: the Lambda's own deadline, less time to settle.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Left between the worker's deadline and the Lambda's, so a run that stops at its deadline
/// still has time to release its lease, change visibilities and answer.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// The worker's deadline for an invocation whose context deadline is `deadline_ms`
/// (milliseconds since the Unix epoch): the time remaining less [`DEADLINE_MARGIN`], and never
/// in the past.
pub fn worker_deadline(deadline_ms: u64) -> Instant {
    let now = Instant::now();
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        });
    let remaining = Duration::from_millis(deadline_ms.saturating_sub(now_ms));
    now + remaining.saturating_sub(DEADLINE_MARGIN)
}

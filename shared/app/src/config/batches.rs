//! `[batches]`: how batches run (window, chunks, concurrency, checkpoints, leases).

use std::time::Duration;

use prism_core::batches::service::BatchPolicy;
use serde::Deserialize;

/// How batches run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// From creation to expiry. The API only takes `completion_window: "24h"`; this is how long
    /// that is here (shorter in tests).
    #[serde(with = "humantime_serde")]
    pub completion_window: Duration,
    pub lines_per_chunk: usize,
    /// Lines of one chunk in flight at once.
    pub line_concurrency: usize,
    /// Batch lines toward one model in flight at once, per process.
    pub model_concurrency: usize,
    /// Finished lines are committed within this long of arriving (default 250 ms), so a kill
    /// repeats at most the calls in flight; at most `checkpoint_lines` go in one commit.
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
    pub checkpoint_lines: usize,
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    pub max_active_per_tenant: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        let p = BatchPolicy::default();
        Self {
            completion_window: p.completion_window,
            lines_per_chunk: p.lines_per_chunk,
            line_concurrency: p.line_concurrency,
            model_concurrency: p.model_concurrency,
            checkpoint_every: p.checkpoint_every,
            checkpoint_lines: p.checkpoint_lines,
            lease: p.lease,
            max_active_per_tenant: p.max_active_per_tenant,
        }
    }
}

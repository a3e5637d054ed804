//! `[workers]` and `[jobs]`: how work runs (concurrency, attempts, timeouts, leases) and how
//! long jobs, keys and schedules are kept and allowed.

use std::time::Duration;

use prism_core::deps::WorkPolicy;
use prism_core::jobs::service::JobPolicy;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSection {
    /// Work items (jobs, batch-stage messages) run at once by each of this process's consumers.
    pub concurrency: usize,
    /// Upstream attempts per job, the first included.
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// Retry waits up to this long are slept through; longer ones release the job for later.
    #[serde(with = "humantime_serde")]
    pub max_inline_retry_wait: Duration,
    #[serde(with = "humantime_serde")]
    pub cancel_poll: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(with = "humantime_serde")]
    pub reconcile_every: Duration,
    /// Deliveries of one message (any stage) before it is dead-lettered: a job fails with
    /// `processing_failed`, a batch stage settles as its dead letter does.
    pub max_receives: u32,
    /// How far a job's lease outlives the upstream attempt it covers.
    #[serde(with = "humantime_serde")]
    pub lease_margin: Duration,
    /// `--backend aws`: how long a received message stays hidden before the consumer extends it.
    #[serde(with = "humantime_serde")]
    pub visibility: Duration,
}

impl Default for WorkerSection {
    fn default() -> Self {
        let policy = JobPolicy::default();
        let work = WorkPolicy::default();
        Self {
            concurrency: 64,
            max_attempts: work.max_attempts,
            upstream_timeout: work.upstream_timeout,
            max_inline_retry_wait: policy.max_inline_retry_wait,
            cancel_poll: policy.cancel_poll,
            shutdown_grace: Duration::from_secs(30),
            reconcile_every: Duration::from_secs(10),
            max_receives: work.max_receives,
            lease_margin: policy.lease_margin,
            visibility: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobSection {
    /// How long a finished job stays readable, from its completion.
    #[serde(with = "humantime_serde")]
    pub retention: Duration,
    #[serde(with = "humantime_serde")]
    pub idempotency_ttl: Duration,
    /// A `pending` job untouched this long is triggered again by the reconciler.
    #[serde(with = "humantime_serde")]
    pub stranded_after: Duration,
    /// How far ahead `scheduled_at` may be.
    #[serde(with = "humantime_serde")]
    pub schedule_horizon: Duration,
    /// The shortest interval between a recurring schedule's fire times. Under a minute allows a
    /// 6-field cron with seconds, on embedded only (tests); the AWS backend keeps 60 s.
    #[serde(with = "humantime_serde")]
    pub recurring_min_interval: Duration,
    /// Active and paused recurring schedules per tenant.
    pub max_recurring_per_tenant: usize,
}

impl Default for JobSection {
    fn default() -> Self {
        let policy = JobPolicy::default();
        Self {
            retention: policy.retention,
            idempotency_ttl: policy.idempotency_ttl,
            stranded_after: WorkPolicy::default().stranded_after,
            schedule_horizon: policy.schedule_horizon,
            recurring_min_interval: policy.recurring_min_interval,
            max_recurring_per_tenant: policy.max_recurring_per_tenant,
        }
    }
}

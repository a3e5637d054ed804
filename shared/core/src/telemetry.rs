//! The metrics Prism records, listed once: their names, kinds, units and label sets, the same
//! on both backends (Prometheus text on `prism serve`, CloudWatch Embedded Metric Format in the
//! Lambda functions), and the typed helpers the places that own the events record through.
//!
//! Recording goes through the `metrics` facade, which is IO-free: until a recorder is installed
//! (and [`describe_metrics`] called) every call returns at once, so tests and embedders that
//! install none pay nothing. The hot path's handles are cached per label set ([`handles`]).

mod handles;

use std::sync::LazyLock;
use std::time::Duration;

use metrics::{Counter, Histogram, Unit};

use handles::{HandleCache, recording, start_recording};

/// Every metric Prism records. The Prometheus and EMF names are the same ([`Metric::name`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Counter `{route, method, status}`: HTTP requests answered.
    HttpRequests,
    /// Histogram `{route, method, status}`, seconds: time to the response head.
    HttpRequestDuration,
    /// Counter `{kind, model}`: jobs accepted (async, scheduled, batch lines when a batch is
    /// planned).
    JobsSubmitted,
    /// Counter `{kind, model}`: runs begun (a claim that won; a retry is not a new start).
    JobsStarted,
    /// Counter `{kind, model}`.
    JobsCompleted,
    /// Counter `{kind, model}`.
    JobsFailed,
    /// Counter `{kind, model}`.
    JobsCancelled,
    /// Histogram `{kind, model}`, seconds: from submit (or due time) until the run began.
    JobQueueWait,
    /// Histogram `{kind, model}`, seconds: from the claim until the outcome was recorded.
    JobRunTime,
    /// Counter `{kind, model}`: upstream attempts after the first.
    UpstreamRetries,
    /// Counter `{provider, model, outcome}`: upstream chat completion attempts.
    UpstreamCalls,
    /// Histogram `{provider, model, outcome}`, seconds.
    UpstreamDuration,
    /// Counter `{outcome}`: batch lines written to the output (`completed`) or error file.
    BatchLinesProcessed,
    /// Gauge: batches not yet terminal, as the last reconciler pass counted them (up to 500).
    BatchesActive,
    /// Counter `{outcome}`: webhook delivery attempts (`delivered` or `failed`).
    WebhookDeliveries,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::HttpRequests,
        Metric::HttpRequestDuration,
        Metric::JobsSubmitted,
        Metric::JobsStarted,
        Metric::JobsCompleted,
        Metric::JobsFailed,
        Metric::JobsCancelled,
        Metric::JobQueueWait,
        Metric::JobRunTime,
        Metric::UpstreamRetries,
        Metric::UpstreamCalls,
        Metric::UpstreamDuration,
        Metric::BatchLinesProcessed,
        Metric::BatchesActive,
        Metric::WebhookDeliveries,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Metric::HttpRequests => "prism_http_requests_total",
            Metric::HttpRequestDuration => "prism_http_request_duration_seconds",
            Metric::JobsSubmitted => "prism_jobs_submitted_total",
            Metric::JobsStarted => "prism_jobs_started_total",
            Metric::JobsCompleted => "prism_jobs_completed_total",
            Metric::JobsFailed => "prism_jobs_failed_total",
            Metric::JobsCancelled => "prism_jobs_cancelled_total",
            Metric::JobQueueWait => "prism_job_queue_wait_seconds",
            Metric::JobRunTime => "prism_job_run_seconds",
            Metric::UpstreamRetries => "prism_upstream_retries_total",
            Metric::UpstreamCalls => "prism_upstream_calls_total",
            Metric::UpstreamDuration => "prism_upstream_duration_seconds",
            Metric::BatchLinesProcessed => "prism_batch_lines_processed_total",
            Metric::BatchesActive => "prism_batches_active",
            Metric::WebhookDeliveries => "prism_webhook_deliveries_total",
        }
    }

    pub const fn kind(self) -> MetricKind {
        match self {
            Metric::HttpRequestDuration
            | Metric::JobQueueWait
            | Metric::JobRunTime
            | Metric::UpstreamDuration => MetricKind::Histogram,
            Metric::BatchesActive => MetricKind::Gauge,
            _ => MetricKind::Counter,
        }
    }

    /// The label names, in the order they are recorded.
    pub const fn labels(self) -> &'static [&'static str] {
        match self {
            Metric::HttpRequests | Metric::HttpRequestDuration => &["route", "method", "status"],
            Metric::JobsSubmitted
            | Metric::JobsStarted
            | Metric::JobsCompleted
            | Metric::JobsFailed
            | Metric::JobsCancelled
            | Metric::JobQueueWait
            | Metric::JobRunTime
            | Metric::UpstreamRetries => &["kind", "model"],
            Metric::UpstreamCalls | Metric::UpstreamDuration => &["provider", "model", "outcome"],
            Metric::BatchLinesProcessed | Metric::WebhookDeliveries => &["outcome"],
            Metric::BatchesActive => &[],
        }
    }

    pub const fn unit(self) -> Unit {
        match self.kind() {
            MetricKind::Histogram => Unit::Seconds,
            _ => Unit::Count,
        }
    }

    pub const fn help(self) -> &'static str {
        match self {
            Metric::HttpRequests => "HTTP requests answered, by route template and status",
            Metric::HttpRequestDuration => "Time from request to response head",
            Metric::JobsSubmitted => "Jobs accepted, by kind (async, scheduled, batch_line)",
            Metric::JobsStarted => "Job runs begun",
            Metric::JobsCompleted => "Jobs completed",
            Metric::JobsFailed => "Jobs failed",
            Metric::JobsCancelled => "Jobs cancelled",
            Metric::JobQueueWait => "Wait from submit or due time until a run began",
            Metric::JobRunTime => "Time from claim to recorded outcome",
            Metric::UpstreamRetries => "Upstream attempts after the first",
            Metric::UpstreamCalls => "Upstream chat completion attempts, by outcome",
            Metric::UpstreamDuration => "Upstream attempt latency",
            Metric::BatchLinesProcessed => "Batch lines written to the output or error file",
            Metric::BatchesActive => "Batches not yet terminal (last reconciler pass)",
            Metric::WebhookDeliveries => "Webhook delivery attempts, by outcome",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// Registers names, units and help texts with the installed recorder, and starts recording
/// (call once after installing it; nothing is recorded before).
pub fn describe_metrics() {
    start_recording();
    for metric in Metric::ALL {
        let (name, unit, help) = (metric.name(), metric.unit(), metric.help());
        match metric.kind() {
            MetricKind::Counter => metrics::describe_counter!(name, unit, help),
            MetricKind::Gauge => metrics::describe_gauge!(name, unit, help),
            MetricKind::Histogram => metrics::describe_histogram!(name, unit, help),
        }
    }
}

/// The `kind` label of the job metrics: a job's kind, or one line of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkKind {
    Async,
    Scheduled,
    /// A background response.
    Response,
    BatchLine,
}

impl WorkKind {
    pub const fn as_str(self) -> &'static str {
        match self {
            WorkKind::Async => "async",
            WorkKind::Scheduled => "scheduled",
            WorkKind::Response => "response",
            WorkKind::BatchLine => "batch_line",
        }
    }
}

impl From<crate::jobs::JobKind> for WorkKind {
    fn from(kind: crate::jobs::JobKind) -> Self {
        match kind {
            crate::jobs::JobKind::Async => WorkKind::Async,
            crate::jobs::JobKind::Scheduled => WorkKind::Scheduled,
            crate::jobs::JobKind::Response => WorkKind::Response,
        }
    }
}

/// A step in a job's life that the job counters count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobEvent {
    Submitted,
    Started,
    Completed,
    Failed,
    Cancelled,
    Retried,
}

impl JobEvent {
    const fn metric(self) -> Metric {
        match self {
            JobEvent::Submitted => Metric::JobsSubmitted,
            JobEvent::Started => Metric::JobsStarted,
            JobEvent::Completed => Metric::JobsCompleted,
            JobEvent::Failed => Metric::JobsFailed,
            JobEvent::Cancelled => Metric::JobsCancelled,
            JobEvent::Retried => Metric::UpstreamRetries,
        }
    }
}

/// One job metric's handle for one kind (the cache's key is the model).
struct JobHandle<H> {
    metric: Metric,
    kind: WorkKind,
    handle: H,
}

static JOB_COUNTERS: LazyLock<HandleCache<JobHandle<Counter>>> = LazyLock::new(HandleCache::new);
static JOB_HISTOGRAMS: LazyLock<HandleCache<JobHandle<Histogram>>> =
    LazyLock::new(HandleCache::new);

/// Counts `n` job events of one kind and model.
pub fn count_jobs(event: JobEvent, kind: WorkKind, model: &str, n: u64) {
    if !recording() {
        return;
    }
    let metric = event.metric();
    JOB_COUNTERS.with(
        model,
        |h| h.metric == metric && h.kind == kind,
        || JobHandle {
            metric,
            kind,
            handle: metrics::counter!(
                metric.name(),
                "kind" => kind.as_str(),
                "model" => model.to_owned()
            ),
        },
        |h| h.handle.increment(n),
    );
}

fn record_job_histogram(metric: Metric, kind: WorkKind, model: &str, took: Duration) {
    if !recording() {
        return;
    }
    JOB_HISTOGRAMS.with(
        model,
        |h| h.metric == metric && h.kind == kind,
        || JobHandle {
            metric,
            kind,
            handle: metrics::histogram!(
                metric.name(),
                "kind" => kind.as_str(),
                "model" => model.to_owned()
            ),
        },
        |h| h.handle.record(took.as_secs_f64()),
    );
}

/// Records how long a job waited before its run began.
pub fn record_queue_wait(kind: WorkKind, model: &str, wait: Duration) {
    record_job_histogram(Metric::JobQueueWait, kind, model, wait);
}

/// Records how long one run took, from its claim to its recorded outcome.
pub fn record_run_time(kind: WorkKind, model: &str, took: Duration) {
    record_job_histogram(Metric::JobRunTime, kind, model, took);
}

/// The `outcome` label of an upstream attempt: few values, so dashboards and alarms can sum
/// everything that is not `ok`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamOutcome {
    Ok,
    /// A 429.
    RateLimited,
    /// Any other non-2xx status.
    Status,
    Timeout,
    Connect,
    InvalidResponse,
}

impl UpstreamOutcome {
    pub const fn as_str(self) -> &'static str {
        match self {
            UpstreamOutcome::Ok => "ok",
            UpstreamOutcome::RateLimited => "rate_limited",
            UpstreamOutcome::Status => "error_status",
            UpstreamOutcome::Timeout => "timeout",
            UpstreamOutcome::Connect => "connect",
            UpstreamOutcome::InvalidResponse => "invalid_response",
        }
    }

    pub fn of<T>(result: &Result<T, crate::ports::UpstreamError>) -> Self {
        use crate::ports::UpstreamError;
        match result {
            Ok(_) => UpstreamOutcome::Ok,
            Err(UpstreamError::Status { status: 429, .. }) => UpstreamOutcome::RateLimited,
            Err(UpstreamError::Status { .. }) => UpstreamOutcome::Status,
            Err(UpstreamError::Timeout) => UpstreamOutcome::Timeout,
            Err(UpstreamError::Connect | UpstreamError::NoRoute(_)) => UpstreamOutcome::Connect,
            Err(_) => UpstreamOutcome::InvalidResponse,
        }
    }
}

/// One upstream attempt's handles for one provider and outcome (the cache's key is the model).
struct UpstreamHandles {
    provider: Box<str>,
    outcome: UpstreamOutcome,
    calls: Counter,
    duration: Histogram,
}

static UPSTREAM: LazyLock<HandleCache<UpstreamHandles>> = LazyLock::new(HandleCache::new);

/// Records one upstream attempt: its count and its latency, by provider, model and outcome.
pub fn record_upstream_call(provider: &str, model: &str, outcome: UpstreamOutcome, took: Duration) {
    if !recording() {
        return;
    }
    UPSTREAM.with(
        model,
        |h| h.outcome == outcome && *h.provider == *provider,
        || {
            let labels = [
                ("provider", provider.to_owned()),
                ("model", model.to_owned()),
                ("outcome", outcome.as_str().to_owned()),
            ];
            UpstreamHandles {
                provider: provider.into(),
                outcome,
                calls: metrics::counter!(Metric::UpstreamCalls.name(), &labels),
                duration: metrics::histogram!(Metric::UpstreamDuration.name(), &labels),
            }
        },
        |h| {
            h.calls.increment(1);
            h.duration.record(took.as_secs_f64());
        },
    );
}

/// Counts batch lines written, by whether they went to the output or the error file.
pub fn count_batch_lines(completed: u64, failed: u64) {
    if !recording() {
        return;
    }
    let name = Metric::BatchLinesProcessed.name();
    if completed > 0 {
        metrics::counter!(name, "outcome" => "completed").increment(completed);
    }
    if failed > 0 {
        metrics::counter!(name, "outcome" => "failed").increment(failed);
    }
}

pub fn set_active_batches(count: usize) {
    if !recording() {
        return;
    }
    metrics::gauge!(Metric::BatchesActive.name()).set(count as f64);
}

pub fn count_webhook_delivery(delivered: bool) {
    if !recording() {
        return;
    }
    let outcome = if delivered { "delivered" } else { "failed" };
    metrics::counter!(Metric::WebhookDeliveries.name(), "outcome" => outcome).increment(1);
}

/// One answered request's handles for one method and status (the cache's key is the route).
struct HttpHandles {
    method: &'static str,
    status: u16,
    requests: Counter,
    duration: Histogram,
}

static HTTP: LazyLock<HandleCache<HttpHandles>> = LazyLock::new(HandleCache::new);

/// The `method` label: the standard methods by name, any other as `other`, so a client's made-up
/// method cannot add series.
fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

/// Records one answered HTTP request. `route` is the route template (`/v1/batches/{id}`), never
/// the path, so ids do not multiply the series.
pub fn record_http_request(route: &str, method: &str, status: u16, took: Duration) {
    if !recording() {
        return;
    }
    let method = method_label(method);
    HTTP.with(
        route,
        |h| h.status == status && h.method == method,
        || {
            let labels = [
                ("route", route.to_owned()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            HttpHandles {
                method,
                status,
                requests: metrics::counter!(Metric::HttpRequests.name(), &labels),
                duration: metrics::histogram!(Metric::HttpRequestDuration.name(), &labels),
            }
        },
        |h| {
            h.requests.increment(1);
            h.duration.record(took.as_secs_f64());
        },
    );
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn metric_names_are_unique_prism_prefixed_and_counters_end_in_total() {
        let names: HashSet<_> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Metric::ALL.len());
        for metric in Metric::ALL {
            let name = metric.name();
            assert!(name.starts_with("prism_"), "{name}");
            assert_eq!(
                metric.kind() == MetricKind::Counter,
                name.ends_with("_total"),
                "{name}"
            );
            if metric.kind() == MetricKind::Histogram {
                assert!(name.ends_with("_seconds"), "{name}");
            }
        }
    }

    #[test]
    fn made_up_methods_share_one_label() {
        assert_eq!(method_label("GET"), "GET");
        assert_eq!(method_label("DELETE"), "DELETE");
        assert_eq!(method_label("BREW"), "other");
        assert_eq!(method_label("get"), "other");
    }

    #[test]
    fn a_429_is_rate_limited_and_other_statuses_are_not() {
        use crate::ports::UpstreamError;
        let status = |status| -> Result<(), UpstreamError> {
            Err(UpstreamError::Status {
                status,
                error: None,
                retry_after: None,
                should_retry: None,
            })
        };
        assert_eq!(
            UpstreamOutcome::of(&status(429)),
            UpstreamOutcome::RateLimited
        );
        assert_eq!(UpstreamOutcome::of(&status(503)), UpstreamOutcome::Status);
        assert_eq!(UpstreamOutcome::of(&Ok::<(), _>(())), UpstreamOutcome::Ok);
    }
}

//! Running one job: claim it under a lease, call the upstream with retries while watching for a
//! cancel, and record the outcome with the lease's fencing token; and failing a job whose
//! message was dead-lettered. [`crate::dispatch`] hands it the job's deliveries.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ApiEndpoint;
use crate::deps::Deps;
use crate::error::StoreError;
use crate::ids::new_lease_token;
use crate::jobs::decisions::next_attempt;
use crate::jobs::{Finish, JobError, JobKind, JobRef};
use crate::ports::{ClaimOutcome, Completion, Lease, ReceivedClaim, UpstreamError};
use crate::responses::run::run_streamed_response;
use crate::responses::{summarize_response_request, upstream_request};
use crate::retry::{RateLimits, delay_before_retry, tries_again};
use crate::telemetry::{self, JobEvent, WorkKind};

/// How a run ended, before it is mapped to a queue action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Finished,
    /// Another worker holds a live lease; come back after it ends.
    Busy(Duration),
    /// A retry is due later than is worth sleeping for; the lease was released.
    RetryLater(Duration),
    /// A scheduled job delivered this long before its time.
    NotDue(Duration),
}

/// Drives a dead-lettered job to `failed` with code `processing_failed`, unless it already ended.
pub async fn dead_letter(deps: &Deps, id: &JobRef) -> Result<(), StoreError> {
    let now = deps.clock.now();
    let failed = deps
        .jobs
        .fail_unfinished(
            id,
            &JobError::processing_failed(),
            now,
            now.plus(deps.job_policy.retention),
        )
        .await?;
    if failed {
        tracing::warn!("job dead-lettered and failed with processing_failed");
        // Counted here, where the conditional write said this call failed it: a dead letter
        // delivered again finds the job ended and counts nothing. The port answers only
        // whether it wrote, so the labels come from the (now terminal, unchanging) row.
        match deps.jobs.get(&id.tenant, &id.id, now).await {
            Ok(Some(job)) => {
                telemetry::count_jobs(JobEvent::Failed, WorkKind::from(job.kind), &job.model, 1);
            }
            Ok(None) => tracing::debug!("dead-lettered job gone before it was counted"),
            Err(error) => tracing::debug!(%error, "dead-lettered job not counted"),
        }
    }
    Ok(())
}

/// Runs one job to a terminal state, or until a retry is due later than is worth waiting for.
/// `received` is the claim the queue made in the receive, if it made one (then no claim of our
/// own: one write fewer per job).
pub async fn run_job(
    deps: &Deps,
    id: &JobRef,
    deadline: Option<Instant>,
    stop: &CancellationToken,
    received: Option<Box<ReceivedClaim>>,
) -> Result<RunOutcome, StoreError> {
    let policy = &deps.job_policy;
    let (lease, now, claimed, request) = match received.map(|r| *r) {
        Some(ReceivedClaim {
            lease,
            at,
            outcome,
            request,
        }) => (lease, at, outcome, request),
        None => {
            let now = deps.clock.now();
            let attempt_budget = attempt_timeout(deps.work_policy.upstream_timeout, deadline);
            let lease = Lease {
                token: new_lease_token(),
                expires_at: now.plus(attempt_budget + policy.lease_margin),
            };
            let claimed = deps.jobs.claim(id, &lease, now).await?;
            (lease, now, claimed, None)
        }
    };
    let mut job = match claimed {
        ClaimOutcome::Claimed(job) => {
            // The lease's clock started before the claim waited for the store: what is left of
            // it tells a lapse (another worker re-running the job) apart from a slow upstream.
            tracing::debug!(
                attempts = job.attempts,
                lease_left_ms = deps.clock.now().until(lease.expires_at).as_millis(),
                "job claimed"
            );
            let kind = WorkKind::from(job.kind);
            // A re-claim after a lapsed lease or a released retry is the same run going on.
            if job.attempts <= 1 {
                telemetry::count_jobs(JobEvent::Started, kind, &job.model, 1);
                let due = job.scheduled_at.unwrap_or(job.created_at);
                telemetry::record_queue_wait(kind, &job.model, due.until(now));
            }
            job
        }
        ClaimOutcome::Busy { lease_expires_at } => {
            tracing::debug!(
                busy_for_ms = now.until(lease_expires_at).as_millis(),
                "job busy under another lease"
            );
            // Not ours to run: reappear just after the live lease ends, never acknowledge.
            return Ok(RunOutcome::Busy(
                now.until(lease_expires_at) + Duration::from_secs(1),
            ));
        }
        ClaimOutcome::NotDue { due_at } => {
            // Come back just after the due time, never before it.
            return Ok(RunOutcome::NotDue(
                now.until(due_at) + Duration::from_millis(100),
            ));
        }
        ClaimOutcome::Terminal(_) | ClaimOutcome::Missing => return Ok(RunOutcome::Finished),
    };
    let body = match request {
        Some(body) => body,
        None => match deps.jobs.request_body(id).await? {
            Some(body) => body,
            None => return Ok(RunOutcome::Finished),
        },
    };
    let token = lease.token;
    let (endpoint, body) = match job.kind {
        JobKind::Response => {
            let streamed = summarize_response_request(&body).is_ok_and(|s| s.stream);
            let Ok(upstream_body) = upstream_request(&body, streamed) else {
                // Validated when created: only a corrupt row gets here.
                return Err(StoreError::Corrupt(
                    "background response request".to_owned(),
                ));
            };
            if streamed {
                return run_streamed_response(deps, id, &token, &job, upstream_body, stop).await;
            }
            (ApiEndpoint::Responses, upstream_body)
        }
        JobKind::Async | JobKind::Scheduled => (job.endpoint, body),
    };
    let claimed_at = Instant::now();
    let kind = WorkKind::from(job.kind);
    let model = job.model.clone();
    let ended = |event: JobEvent| {
        telemetry::count_jobs(event, kind, &model, 1);
        telemetry::record_run_time(kind, &model, claimed_at.elapsed());
    };
    loop {
        let timeout = attempt_timeout(deps.work_policy.upstream_timeout, deadline);
        let attempt = watch_cancel(
            deps,
            id,
            &token,
            stop,
            call_upstream(deps, endpoint, &job.model, &body, timeout),
        )
        .await;
        let result = match attempt {
            Watched::Cancelled => {
                tracing::info!("job cancelled while running; upstream call aborted");
                return Ok(RunOutcome::Finished);
            }
            Watched::Stopped => return give_back(deps, id, &token).await,
            Watched::Done(result) => result,
        };
        let error = match result {
            Ok(completion) => {
                if finish(
                    deps,
                    id,
                    &token,
                    Finish::completed(&job, completion.body, deps.clock.now()),
                )
                .await?
                {
                    ended(JobEvent::Completed);
                }
                return Ok(RunOutcome::Finished);
            }
            Err(error) => error,
        };
        if !tries_again(
            &error,
            job.attempts,
            deps.work_policy.max_attempts,
            RateLimits::CountAsAttempts,
        ) {
            tracing::info!(attempts = job.attempts, %error, "job failed");
            if finish(
                deps,
                id,
                &token,
                Finish::Failed {
                    error: error.to_job_error(),
                },
            )
            .await?
            {
                ended(JobEvent::Failed);
            }
            return Ok(RunOutcome::Finished);
        }
        let wait = delay_before_retry(job.attempts, error.retry_after());
        tracing::debug!(attempts = job.attempts, ?wait, %error, "retrying upstream call");
        let fits_deadline = deadline.is_none_or(|d| Instant::now() + wait + timeout < d);
        if wait > policy.max_inline_retry_wait || !fits_deadline {
            let retry_at = deps.clock.now().plus(wait);
            deps.jobs.release(id, &token, retry_at).await?;
            return Ok(RunOutcome::RetryLater(wait));
        }
        match watch_cancel(deps, id, &token, stop, tokio::time::sleep(wait)).await {
            Watched::Cancelled => return Ok(RunOutcome::Finished),
            Watched::Stopped => return give_back(deps, id, &token).await,
            Watched::Done(()) => {}
        }
        let lease_until = deps.clock.now().plus(
            attempt_timeout(deps.work_policy.upstream_timeout, deadline) + policy.lease_margin,
        );
        let attempt = next_attempt(job.attempts);
        if !deps
            .jobs
            .begin_attempt(id, &token, attempt, lease_until)
            .await?
        {
            return Ok(RunOutcome::Finished);
        }
        job.attempts = attempt;
        telemetry::count_jobs(JobEvent::Retried, kind, &model, 1);
    }
}

/// Shutdown: release the lease so the job can be claimed again at once.
pub(crate) async fn give_back(
    deps: &Deps,
    id: &JobRef,
    token: &str,
) -> Result<RunOutcome, StoreError> {
    tracing::info!("worker stopping; job released for another worker");
    deps.jobs.release(id, token, deps.clock.now()).await?;
    Ok(RunOutcome::RetryLater(Duration::ZERO))
}

fn attempt_timeout(configured: Duration, deadline: Option<Instant>) -> Duration {
    match deadline {
        Some(d) => configured.min(d.saturating_duration_since(Instant::now())),
        None => configured,
    }
}

async fn call_upstream(
    deps: &Deps,
    endpoint: ApiEndpoint,
    model: &str,
    body: &Bytes,
    timeout: Duration,
) -> Result<Completion, UpstreamError> {
    let _yielded = deps.model_gate.interactive(model);
    deps.upstream
        .complete(endpoint, model, body.clone(), timeout)
        .await
}

/// Records the outcome; false when the lease was lost meanwhile and another outcome stands.
pub(crate) async fn finish(
    deps: &Deps,
    id: &JobRef,
    token: &str,
    outcome: Finish,
) -> Result<bool, StoreError> {
    let now = deps.clock.now();
    let asked = Instant::now();
    let kept = deps
        .jobs
        .finish(
            id,
            token,
            &outcome,
            now,
            now.plus(deps.job_policy.retention),
        )
        .await?;
    if !kept {
        // Cancelled meanwhile, or a newer lease took over: that writer's outcome stands.
        tracing::info!(
            status = outcome.status().as_str(),
            write_ms = asked.elapsed().as_millis(),
            "outcome discarded: lease no longer held"
        );
    } else {
        tracing::debug!(
            status = outcome.status().as_str(),
            write_ms = asked.elapsed().as_millis(),
            "job outcome recorded"
        );
    }
    Ok(kept)
}

pub(crate) enum Watched<T> {
    Done(T),
    /// The job was cancelled (or taken over): it is no longer ours.
    Cancelled,
    /// This worker is shutting down.
    Stopped,
}

/// Runs `work` while polling the store; drops it (aborting any request) once the job is no
/// longer running under `token`.
pub(crate) async fn watch_cancel<T>(
    deps: &Deps,
    id: &JobRef,
    token: &str,
    stop: &CancellationToken,
    work: impl Future<Output = T>,
) -> Watched<T> {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(deps.job_policy.cancel_poll);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        tokio::select! {
            out = &mut work => return Watched::Done(out),
            _ = stop.cancelled() => return Watched::Stopped,
            _ = ticker.tick() => match deps.jobs.still_holds(id, token).await {
                Ok(true) => {}
                Ok(false) => return Watched::Cancelled,
                Err(error) => tracing::warn!(%error, "could not poll job status; continuing"),
            },
        }
    }
}

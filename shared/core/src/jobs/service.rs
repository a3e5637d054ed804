//! The job services behind the HTTP routes: submit (async and scheduled, with idempotency keys),
//! read, list and cancel, and the job policy. Each is a plain function over [`Deps`], the same
//! for every backend and every trigger.

use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::clock::Timestamp;
use crate::deps::{Deps, MAX_QUEUE_DELAY, trigger_at};
use crate::endpoint::ApiEndpoint;
use crate::error::ServiceError;
use crate::ids::{JobId, TenantId};
use crate::jobs::scheduled::parse_schedule_request;
use crate::jobs::{Job, JobKind, NewJob, decisions};
use crate::list::{ListQuery, Page};
use crate::ports::{CancelOutcome, CreateOutcome, IdempotencyClaim, WorkItem};
use crate::requests::summarize_request;
use crate::telemetry::{self, JobEvent};

/// Knobs of the job lifecycle, read once from configuration.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    /// How long a terminal job stays readable, counted from its terminal transition.
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// A retry wait up to this long is slept through; a longer one releases the message.
    pub max_inline_retry_wait: Duration,
    /// How often a running job's worker checks the store for a cancel.
    pub cancel_poll: Duration,
    /// How far a lease outlives the attempt it covers.
    pub lease_margin: Duration,
    /// How far ahead a scheduled job may be due.
    pub schedule_horizon: Duration,
    /// The shortest gap between a recurring schedule's fire times (60 s on AWS, whose
    /// EventBridge cron has no seconds; lower only to test embedded with a seconds field).
    pub recurring_min_interval: Duration,
    /// Active and paused recurring schedules one tenant may have.
    pub max_recurring_per_tenant: usize,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            max_inline_retry_wait: Duration::from_secs(5),
            cancel_poll: Duration::from_secs(1),
            lease_margin: Duration::from_secs(30),
            schedule_horizon: Duration::from_secs(365 * 24 * 3600),
            recurring_min_interval: Duration::from_secs(60),
            max_recurring_per_tenant: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// True when an `Idempotency-Key` matched an earlier create with the same body.
    pub replayed: bool,
}

/// The longest `Idempotency-Key` header, in (printable ASCII) characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Validates an async request to `endpoint`, stores it `pending` and triggers a worker.
#[tracing::instrument(skip_all, fields(tenant = %tenant, %endpoint, job_id))]
pub async fn submit_async_job(
    deps: &Deps,
    tenant: &TenantId,
    endpoint: ApiEndpoint,
    body: Bytes,
    idempotency_key: Option<&str>,
) -> Result<Submitted, ServiceError> {
    let summary = summarize_request(endpoint, &body)?;
    if summary.stream {
        return Err(ServiceError::invalid(
            "Streaming is not supported for async requests; remove 'stream' or send the request without 'x-prism-async'.",
            Some("stream"),
            Some("streaming_unsupported"),
        ));
    }
    if !deps.upstream.routes(&summary.model) {
        return Err(model_not_found(&summary.model));
    }
    let now = deps.clock.now();
    let job = NewJob {
        id: deps.ids.job_id(now),
        tenant: tenant.clone(),
        kind: JobKind::Async,
        endpoint,
        model: summary.model,
        request: body,
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    create_job(deps, job, idempotency_key).await
}

/// Validates a scheduled chat completion (`POST /v1/scheduled`), stores it `pending` and arranges
/// its delivery at `scheduled_at`.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id))]
pub async fn submit_scheduled_job(
    deps: &Deps,
    tenant: &TenantId,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Submitted, ServiceError> {
    let now = deps.clock.now();
    let request = parse_schedule_request(body, now, deps.job_policy.schedule_horizon)?;
    if !deps.upstream.routes(&request.model) {
        return Err(ServiceError::invalid(
            format!(
                "The model '{}' does not exist or you do not have access to it.",
                request.model
            ),
            Some("request.model"),
            Some("model_not_found"),
        ));
    }
    let job = NewJob {
        id: deps.ids.scheduled_job_id(now),
        tenant: tenant.clone(),
        kind: JobKind::Scheduled,
        endpoint: request.endpoint,
        model: request.model,
        request: request.request,
        created_at: now,
        scheduled_at: Some(request.scheduled_at),
        scheduled_job_id: None,
        metadata: request.metadata,
    };
    create_job(deps, job, idempotency_key).await
}

/// Stores a new job under an optional `Idempotency-Key` and triggers it, whatever its kind.
pub(crate) async fn create_job(
    deps: &Deps,
    job: NewJob,
    idempotency_key: Option<&str>,
) -> Result<Submitted, ServiceError> {
    let claim = idempotency_key
        .map(|key| idempotency_claim(deps, key, &job))
        .transpose()?;
    tracing::Span::current().record("job_id", job.id.as_str());
    // Storing and queueing: the span whose context the queue message carries to the worker.
    let queue_span = tracing::info_span!("queue", job_id = %job.id, tenant = %job.tenant);
    let created = deps
        .jobs
        .create(&job, claim.as_ref())
        .instrument(queue_span.clone())
        .await?;
    let triggered = match decisions::create_outcome(created, &job.id) {
        CreateOutcome::Created { triggered } => triggered,
        CreateOutcome::Replayed {
            job_id,
            same_body: true,
        } => {
            let job = deps
                .jobs
                .get(&job.tenant, &job_id, job.created_at)
                .await?
                .ok_or(ServiceError::NotFound {
                    what: "job",
                    id: job_id.to_string(),
                })?;
            return Ok(Submitted {
                job,
                replayed: true,
            });
        }
        CreateOutcome::Replayed {
            same_body: false, ..
        } => {
            return Err(ServiceError::invalid(
                "This Idempotency-Key was already used with a different request body.",
                None,
                Some("idempotency_key_reused"),
            ));
        }
    };
    telemetry::count_jobs(JobEvent::Submitted, job.kind.into(), &job.model, 1);
    // The row is the source of truth: if this trigger is lost, the reconciler triggers the job
    // once it is due. A triggered create was queued by the store itself.
    if !triggered {
        let due = job.scheduled_at.unwrap_or(job.created_at);
        if let Err(error) = trigger_at(deps, &WorkItem::Job(job.job_ref()), due)
            .instrument(queue_span)
            .await
        {
            tracing::warn!(%error, "trigger failed after the job was stored; the reconciler will trigger it");
        }
    }
    Ok(Submitted {
        job: job.to_job(),
        replayed: false,
    })
}

fn idempotency_claim(
    deps: &Deps,
    key: &str,
    job: &NewJob,
) -> Result<IdempotencyClaim, ServiceError> {
    idempotency_claim_for(
        deps,
        key,
        job.kind.as_str(),
        job.scheduled_at,
        &job.request,
        job.created_at,
    )
}

/// The claim an `Idempotency-Key` makes for a create of this kind (`async`, `scheduled`,
/// `recurring`): its key checked, and the hash of what the create asks for.
pub(crate) fn idempotency_claim_for(
    deps: &Deps,
    key: &str,
    kind: &str,
    scheduled_at: Option<Timestamp>,
    request: &[u8],
    now: Timestamp,
) -> Result<IdempotencyClaim, ServiceError> {
    if key.is_empty()
        || key.len() > MAX_IDEMPOTENCY_KEY_LEN
        || !key.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ServiceError::invalid(
            format!(
                "The Idempotency-Key header must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} printable ASCII characters."
            ),
            None,
            Some("invalid_idempotency_key"),
        ));
    }
    // The kind is hashed too: the same key and body sent as async and as scheduled differ.
    let mut hash = Sha256::new();
    hash.update(kind);
    hash.update([0]);
    if let Some(at) = scheduled_at {
        hash.update(at.0.to_be_bytes());
    }
    hash.update(request);
    Ok(IdempotencyClaim {
        key: key.to_owned(),
        body_hash: hex::encode(hash.finalize()),
        expires_at: now.plus(deps.job_policy.idempotency_ttl),
    })
}

/// Whether a job was handed to the [`Scheduler`] when it was created.
fn went_through_scheduler(job: &Job) -> bool {
    job.scheduled_at
        .is_some_and(|due| job.created_at.until(due) > MAX_QUEUE_DELAY)
}

pub fn model_not_found(model: &str) -> ServiceError {
    ServiceError::invalid(
        format!("The model '{model}' does not exist or you do not have access to it."),
        Some("model"),
        Some("model_not_found"),
    )
}

fn parse_job_id(id: &str, kind: JobKind) -> Result<JobId, ServiceError> {
    JobId::parse_kind(id, kind).ok_or_else(|| ServiceError::NotFound {
        what: "job",
        id: id.to_owned(),
    })
}

/// One of the tenant's jobs of `kind`; another tenant's is as unknown as a made-up id.
pub async fn get_job(
    deps: &Deps,
    tenant: &TenantId,
    kind: JobKind,
    id: &str,
) -> Result<Job, ServiceError> {
    let job_id = parse_job_id(id, kind)?;
    deps.jobs
        .get(tenant, &job_id, deps.clock.now())
        .await?
        .ok_or_else(|| ServiceError::NotFound {
            what: "job",
            id: id.to_owned(),
        })
}

pub async fn list_jobs(
    deps: &Deps,
    tenant: &TenantId,
    kind: JobKind,
    query: &ListQuery,
) -> Result<Page<Job>, ServiceError> {
    Ok(deps
        .jobs
        .list(tenant, kind, query, deps.clock.now())
        .await?)
}

/// Cancels a pending or running job. A running worker notices through the store and aborts its
/// upstream call; a scheduled job's pending delivery is dropped (one that still arrives finds
/// the job terminal and is acknowledged).
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id = id))]
pub async fn cancel_job(
    deps: &Deps,
    tenant: &TenantId,
    kind: JobKind,
    id: &str,
) -> Result<Job, ServiceError> {
    let job_id = parse_job_id(id, kind)?;
    let now = deps.clock.now();
    let expires_at = now.plus(deps.job_policy.retention);
    match deps.jobs.cancel(tenant, &job_id, now, expires_at).await? {
        CancelOutcome::Cancelled(job) => {
            telemetry::count_jobs(JobEvent::Cancelled, job.kind.into(), &job.model, 1);
            if went_through_scheduler(&job)
                && job.started_at.is_none()
                && let Err(error) = deps
                    .scheduler
                    .unschedule(&WorkItem::Job(job.job_ref()))
                    .await
            {
                tracing::warn!(%error, "could not delete the job's schedule; its delivery will be acknowledged as redundant");
            }
            Ok(job)
        }
        CancelOutcome::AlreadyCancelled(job) => Ok(job),
        CancelOutcome::Finished(job) => Err(ServiceError::Conflict {
            action: "cancel",
            status: job.status,
        }),
        CancelOutcome::NotFound => Err(ServiceError::NotFound {
            what: "job",
            id: id.to_owned(),
        }),
    }
}

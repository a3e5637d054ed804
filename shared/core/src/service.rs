//! The job services behind the HTTP routes: submit, read, list and cancel. Each is a plain
//! function over [`Deps`], the same for every backend and every trigger.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::chat::summarize_chat_request;
use crate::clock::Clock;
use crate::error::ServiceError;
use crate::ids::{IdGenerator, JobId, TenantId};
use crate::job::{Job, JobKind, NewJob};
use crate::list::{ListQuery, Page};
use crate::ports::{
    CancelOutcome, CreateOutcome, IdempotencyClaim, JobStore, Upstream, WorkItem, WorkQueue,
};

/// Knobs of the job lifecycle, read once from configuration.
#[derive(Debug, Clone)]
pub struct JobPolicy {
    /// How long a terminal job stays readable, counted from its terminal transition.
    pub retention: Duration,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// Per-attempt upstream timeout.
    pub upstream_timeout: Duration,
    /// Upstream attempts per job, the first included.
    pub max_attempts: u32,
    /// A retry wait up to this long is slept through; a longer one releases the message.
    pub max_inline_retry_wait: Duration,
    /// How often a running job's worker checks the store for a cancel.
    pub cancel_poll: Duration,
    /// How far a lease outlives the attempt it covers.
    pub lease_margin: Duration,
    /// Deliveries of one message before it counts as dead-lettered.
    pub max_receives: u32,
    /// A `pending` job older than this with no trigger waiting is re-triggered.
    pub stranded_after: Duration,
}

impl Default for JobPolicy {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(7 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            upstream_timeout: Duration::from_secs(300),
            max_attempts: 5,
            max_inline_retry_wait: Duration::from_secs(5),
            cancel_poll: Duration::from_secs(1),
            lease_margin: Duration::from_secs(30),
            max_receives: 10,
            stranded_after: Duration::from_secs(60),
        }
    }
}

/// Everything a service or worker call needs, shared by every trigger.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub upstream: Arc<dyn Upstream>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<IdGenerator>,
    pub policy: JobPolicy,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub job: Job,
    /// True when an `Idempotency-Key` matched an earlier create with the same body.
    pub replayed: bool,
}

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Validates an async chat completion, stores it `pending` and triggers a worker.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id))]
pub async fn submit_async_job(
    deps: &Deps,
    tenant: &TenantId,
    body: Bytes,
    idempotency_key: Option<&str>,
) -> Result<Submitted, ServiceError> {
    let summary = summarize_chat_request(&body)?;
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
    let claim = idempotency_key
        .map(|key| {
            if key.is_empty()
                || key.len() > MAX_IDEMPOTENCY_KEY_LEN
                || !key.bytes().all(|b| b.is_ascii_graphic())
            {
                return Err(ServiceError::invalid(
                    "The Idempotency-Key header must be 1 to 255 printable ASCII characters.",
                    None,
                    Some("invalid_idempotency_key"),
                ));
            }
            Ok(IdempotencyClaim {
                key: key.to_owned(),
                body_hash: hex::encode(Sha256::digest(&body)),
                expires_at: now.plus(deps.policy.idempotency_ttl),
            })
        })
        .transpose()?;
    let job = NewJob {
        id: deps.ids.job_id(now),
        tenant: tenant.clone(),
        kind: JobKind::Async,
        model: summary.model,
        request: body,
        created_at: now,
    };
    tracing::Span::current().record("job_id", job.id.as_str());
    let triggered = match deps.store.create(&job, claim.as_ref()).await? {
        CreateOutcome::Created { triggered } => triggered,
        CreateOutcome::Replayed {
            job_id,
            same_body: true,
        } => {
            let job =
                deps.store
                    .get(tenant, &job_id, now)
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
    // The row is the source of truth: if this enqueue is lost, the reconciler triggers the job.
    // A triggered create was queued by the store itself.
    if !triggered
        && let Err(error) = deps
            .queue
            .enqueue(&WorkItem::Job(job.job_ref()), Duration::ZERO)
            .await
    {
        tracing::warn!(%error, "enqueue failed after the job was stored; the reconciler will trigger it");
    }
    Ok(Submitted {
        job: job.to_job(),
        replayed: false,
    })
}

pub fn model_not_found(model: &str) -> ServiceError {
    ServiceError::invalid(
        format!("The model '{model}' does not exist or you do not have access to it."),
        Some("model"),
        Some("model_not_found"),
    )
}

fn parse_job_id(id: &str) -> Result<JobId, ServiceError> {
    JobId::parse(id).ok_or_else(|| ServiceError::NotFound {
        what: "job",
        id: id.to_owned(),
    })
}

pub async fn get_job(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Job, ServiceError> {
    let job_id = parse_job_id(id)?;
    deps.store
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
        .store
        .list(tenant, kind, query, deps.clock.now())
        .await?)
}

/// Cancels a pending or running job. A running worker notices through the store and aborts its
/// upstream call.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id = id))]
pub async fn cancel_job(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Job, ServiceError> {
    let job_id = parse_job_id(id)?;
    let now = deps.clock.now();
    let expires_at = now.plus(deps.policy.retention);
    match deps.store.cancel(tenant, &job_id, now, expires_at).await? {
        CancelOutcome::Cancelled(job) | CancelOutcome::AlreadyCancelled(job) => Ok(job),
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

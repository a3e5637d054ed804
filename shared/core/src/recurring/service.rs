//! The recurring-schedule services behind the HTTP routes: create (from `POST /v1/scheduled`
//! with `schedule`), read, list, pause, resume, delete and the list of runs. Each loads the
//! schedule, asks [`decisions`], writes conditionally on its version (retrying a lost race),
//! then tells the [`RecurringTrigger`](crate::ports::RecurringTrigger).

use bytes::Bytes;

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::{JobId, TenantId};
use crate::jobs::service::idempotency_claim_for;
use crate::jobs::{Job, JobKind, JobStatus};
use crate::list::{ListQuery, Page};
use crate::ports::CreateOutcome;
use crate::recurring::decisions::{self, Transition};
use crate::recurring::request::parse_recurring_request;
use crate::recurring::{Recurring, RecurringStatus};

/// Versioned writes tried before answering 503 (each loses only to another write of the same
/// schedule, so a few suffice).
const WRITE_TRIES: usize = 5;

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        what: "scheduled job",
        id: id.to_owned(),
    }
}

/// Validates a recurring schedule, stores it `active` and arms its first firing.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id))]
pub async fn create_recurring(
    deps: &Deps,
    tenant: &TenantId,
    body: &[u8],
    idempotency_key: Option<&str>,
) -> Result<Created, ServiceError> {
    let now = deps.clock.now();
    let policy = &deps.job_policy;
    let request = parse_recurring_request(body, now, policy.recurring_min_interval)?;
    // The whole body is hashed: the same key with another schedule or request is a reuse. The
    // key is checked in the store's write, after the cap: a retry that finds the tenant at its
    // cap (its first try counting) answers 400 rather than the schedule.
    let claim = idempotency_key
        .map(|key| idempotency_claim_for(deps, key, "recurring", None, body, now))
        .transpose()?;

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
    let live = deps.recurring.count_live(tenant).await?;
    if live >= policy.max_recurring_per_tenant {
        return Err(ServiceError::invalid(
            format!(
                "You have {live} active or paused recurring schedules, the most allowed is {}; delete one first.",
                policy.max_recurring_per_tenant
            ),
            Some("schedule"),
            Some("too_many_recurring_schedules"),
        ));
    }
    let schedule = Recurring {
        id: deps.ids.scheduled_job_id(now),
        tenant: tenant.clone(),
        status: RecurringStatus::Active,
        endpoint: request.endpoint,
        model: request.model,
        metadata: request.metadata,
        next_run_at: decisions::first_fire(&request.recurrence, now, None),
        recurrence: request.recurrence,
        created_at: now,
        last_run_at: None,
        last_fire_at: None,
        run_count: 0,
        skipped_count: 0,
        ended_at: None,
        version: 1,
    };
    tracing::Span::current().record("job_id", schedule.id.as_str());
    let outcome = deps
        .recurring
        .create(
            &schedule,
            &Bytes::copy_from_slice(&request.request),
            claim.as_ref(),
        )
        .await?;
    if let CreateOutcome::Replayed { job_id, same_body } = outcome {
        // A concurrent create with the same key came first.
        return replayed_schedule(deps, tenant, &job_id, same_body).await;
    }
    if let Err(error) = deps.recurring_trigger.arm(&schedule).await {
        // Without its trigger the schedule would never fire: take it back rather than answer
        // 201 for a schedule that does nothing.
        tracing::error!(%error, "could not arm a new recurring schedule; cancelling it");
        let cancelled = Recurring {
            status: RecurringStatus::Cancelled,
            next_run_at: None,
            ended_at: Some(now),
            ..schedule
        };
        let _ = deps.recurring.update(&cancelled).await;
        return Err(ServiceError::Store(error));
    }
    Ok(Created {
        schedule,
        replayed: false,
    })
}

/// A new schedule, or the one an `Idempotency-Key` already made.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub schedule: Recurring,
    /// True when the key matched an earlier create with the same body.
    pub replayed: bool,
}

async fn replayed_schedule(
    deps: &Deps,
    tenant: &TenantId,
    id: &JobId,
    same_body: bool,
) -> Result<Created, ServiceError> {
    if !same_body {
        return Err(ServiceError::invalid(
            "This Idempotency-Key was already used with a different request body.",
            None,
            Some("idempotency_key_reused"),
        ));
    }
    match deps.recurring.get(tenant, id).await? {
        Some(schedule) => Ok(Created {
            schedule,
            replayed: true,
        }),
        // The key names a one-time job: its hash differs, so this is a reuse.
        None => Err(ServiceError::invalid(
            "This Idempotency-Key was already used with a different request body.",
            None,
            Some("idempotency_key_reused"),
        )),
    }
}

/// The tenant's recurring schedule with this id, if it is one.
pub async fn find_recurring(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<Recurring>, ServiceError> {
    let Some(job_id) = JobId::parse_kind(id, JobKind::Scheduled) else {
        return Ok(None);
    };
    Ok(deps.recurring.get(tenant, &job_id).await?)
}

async fn load(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Recurring, ServiceError> {
    find_recurring(deps, tenant, id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn list_recurring(
    deps: &Deps,
    tenant: &TenantId,
    limit: usize,
    after: Option<&JobId>,
) -> Result<Page<Recurring>, ServiceError> {
    Ok(deps.recurring.list(tenant, limit, after).await?)
}

/// Loads, decides and writes until the write lands (or nothing is to be written).
async fn transition(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    action: &'static str,
    decide: impl Fn(&Recurring) -> Transition,
) -> Result<(Recurring, bool), ServiceError> {
    for _ in 0..WRITE_TRIES {
        let current = load(deps, tenant, id).await?;
        match decide(&current) {
            Transition::Unchanged => return Ok((current, false)),
            Transition::Refused => {
                return Err(ServiceError::RecurringConflict {
                    action,
                    status: current.status,
                });
            }
            Transition::Write(next) => {
                if deps.recurring.update(&next).await? {
                    return Ok((
                        Recurring {
                            version: next.version + 1,
                            ..*next
                        },
                        true,
                    ));
                }
            }
        }
    }
    Err(ServiceError::Store(crate::StoreError::Unavailable(
        "recurring schedule kept changing under the write".into(),
    )))
}

#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id = id))]
pub async fn pause_recurring(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Recurring, ServiceError> {
    let (schedule, changed) = transition(deps, tenant, id, "pause", decisions::pause).await?;
    if changed {
        deps.recurring_trigger.pause(&schedule).await?;
    }
    Ok(schedule)
}

#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id = id))]
pub async fn resume_recurring(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Recurring, ServiceError> {
    let now = deps.clock.now();
    let (schedule, changed) =
        transition(deps, tenant, id, "resume", |s| decisions::resume(s, now)).await?;
    if changed {
        match schedule.status {
            RecurringStatus::Active => deps.recurring_trigger.arm(&schedule).await?,
            _ => deps.recurring_trigger.disarm(&schedule).await?,
        }
    }
    Ok(schedule)
}

/// `DELETE /v1/scheduled/{id}` of a recurring schedule: no further runs. A run in progress
/// finishes unless `cancel_running`, which cancels every unfinished run.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id = id))]
pub async fn delete_recurring(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    cancel_running: bool,
) -> Result<Recurring, ServiceError> {
    let now = deps.clock.now();
    let (schedule, changed) =
        transition(deps, tenant, id, "delete", |s| decisions::cancel(s, now)).await?;
    if changed {
        deps.recurring_trigger.disarm(&schedule).await?;
    }
    if cancel_running {
        for status in JobStatus::UNFINISHED {
            let query = ListQuery {
                limit: crate::list::MAX_LIMIT,
                after: None,
                status: Some(status),
                scheduled_job_id: Some(schedule.id.clone()),
            };
            for run in runs(deps, tenant, &schedule, &query).await?.items {
                crate::jobs::service::cancel_job(deps, tenant, JobKind::Async, run.id.as_str())
                    .await
                    .or_else(|error| match error {
                        // Finished in the meantime: nothing to cancel.
                        ServiceError::Conflict { .. } => Ok(run),
                        other => Err(other),
                    })?;
            }
        }
    }
    Ok(schedule)
}

async fn runs(
    deps: &Deps,
    tenant: &TenantId,
    schedule: &Recurring,
    query: &ListQuery,
) -> Result<Page<Job>, ServiceError> {
    let query = ListQuery {
        scheduled_job_id: Some(schedule.id.clone()),
        ..query.clone()
    };
    Ok(deps
        .jobs
        .list(tenant, JobKind::Async, &query, deps.clock.now())
        .await?)
}

/// `GET /v1/scheduled/{id}/runs`: the schedule's runs, newest first.
pub async fn list_runs(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    query: &ListQuery,
) -> Result<Page<Job>, ServiceError> {
    let schedule = load(deps, tenant, id).await?;
    runs(deps, tenant, &schedule, query).await
}

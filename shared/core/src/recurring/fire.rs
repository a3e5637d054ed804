//! The stage that handles one firing of a recurring schedule (a `FireSchedule` delivery), the
//! same for every backend and trigger. Every step can be repeated: the run's id derives from
//! (schedule, fire time), so a redelivered or duplicate firing, or one retried after a crash
//! between steps, names the same run and never makes a second.

use crate::deps::Deps;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::ids::run_job_id;
use crate::jobs::{JobKind, JobRef, NewJob};
use crate::ports::{CreateOutcome, WorkItem};
use crate::recurring::decisions::{self, FireDecision};
use crate::recurring::{OverlapPolicy, Recurring, RecurringRef, RecurringStatus};
use crate::{TenantId, Timestamp};

/// Versioned writes tried before the message is left to reappear.
const WRITE_TRIES: usize = 5;

/// Whether the schedule's latest run is still pending or running (what the skip overlap policy
/// asks).
async fn previous_unfinished(deps: &Deps, schedule: &Recurring) -> Result<bool, StoreError> {
    let Some(last) = schedule.last_run_at else {
        return Ok(false);
    };
    if schedule.recurrence.overlap == OverlapPolicy::Allow {
        return Ok(false);
    }
    let run = run_job_id(&schedule.id, last);
    let job = deps
        .jobs
        .get(&schedule.tenant, &run, deps.clock.now())
        .await?;
    Ok(job.is_some_and(|j| !j.status.is_terminal()))
}

/// Makes the run for fire time `at` (or finds it made) and queues it.
async fn make_run(deps: &Deps, schedule: &Recurring, at: Timestamp) -> Result<(), StoreError> {
    let Some(request) = deps
        .recurring
        .request_body(&schedule.recurring_ref())
        .await?
    else {
        return Err(StoreError::Corrupt(format!(
            "recurring schedule {} has no request body",
            schedule.id
        )));
    };
    let run = NewJob {
        id: run_job_id(&schedule.id, at),
        tenant: schedule.tenant.clone(),
        kind: JobKind::Async,
        endpoint: schedule.endpoint,
        model: schedule.model.clone(),
        request,
        created_at: deps.clock.now(),
        scheduled_at: None,
        scheduled_job_id: Some(schedule.id.clone()),
        metadata: schedule.metadata.clone(),
    };
    // An existing run under this id is this same firing's: stores answer `Created` for it, and
    // the enqueue below is one more delivery of a job that runs once.
    let created = deps.jobs.create(&run, None).await?;
    if !matches!(created, CreateOutcome::Created { triggered: true }) {
        deps.queue
            .enqueue(
                &WorkItem::Job(JobRef {
                    tenant: run.tenant.clone(),
                    id: run.id.clone(),
                }),
                std::time::Duration::ZERO,
            )
            .await?;
    }
    Ok(())
}

/// Handles one firing of `schedule` for fire time `at`.
#[tracing::instrument(skip_all, fields(tenant = %schedule.tenant, job_id = %schedule.id, fire_at = at.0))]
pub async fn fire_schedule(
    deps: &Deps,
    schedule: &RecurringRef,
    at: Timestamp,
) -> Result<QueueAction, StoreError> {
    for _ in 0..WRITE_TRIES {
        let Some(current) = deps.recurring.get(&schedule.tenant, &schedule.id).await? else {
            return Ok(QueueAction::Ack);
        };
        let busy = previous_unfinished(deps, &current).await?;
        match decisions::on_fire(&current, at, deps.clock.now(), busy) {
            FireDecision::Ignore => {
                // A repeat of a handled firing: also what a crash between recording a firing
                // and arming the next one leaves, so arm it again (idempotent).
                if current.status == RecurringStatus::Active {
                    deps.recurring_trigger.rearm(&current).await?;
                }
                return Ok(QueueAction::Ack);
            }
            FireDecision::NotDue(wait) => return Ok(QueueAction::RetryAfter(wait)),
            FireDecision::Handle { at, run, next } => {
                if run {
                    make_run(deps, &current, at).await?;
                } else {
                    tracing::info!("firing skipped by the schedule's overlap or catch-up policy");
                }
                if !deps.recurring.update(&next).await? {
                    // Another firing or a pause came first: decide again on what it wrote.
                    continue;
                }
                match next.status {
                    RecurringStatus::Active => deps.recurring_trigger.rearm(&next).await?,
                    _ => deps.recurring_trigger.disarm(&next).await?,
                }
                return Ok(QueueAction::Ack);
            }
        }
    }
    Err(StoreError::Unavailable(
        "recurring schedule kept changing under a firing".into(),
    ))
}

/// The queue message of one firing, for a schedule's trigger to send.
pub fn firing(tenant: &TenantId, id: &crate::JobId, at: Timestamp) -> WorkItem {
    WorkItem::FireSchedule {
        schedule: RecurringRef {
            tenant: tenant.clone(),
            id: id.clone(),
        },
        at,
    }
}

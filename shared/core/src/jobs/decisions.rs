//! The job state machine's decisions, as pure functions of what a store read: whether a claim
//! may take the job (and if not, which refusal it answers), what a cancel does, and the job as
//! each transition leaves it. Both adapters load, ask these, and write conditionally.

use crate::clock::Timestamp;
use crate::ids::JobId;
use crate::jobs::{Job, JobStatus};
use crate::ports::{CancelOutcome, ClaimOutcome, CreateOutcome};

/// What a create came to, read against the id it tried to store. A replay that names that very
/// id is not another submit's job: it is this create, applied by an earlier try of the same write
/// whose answer was lost (a reset connection, the SDK sending it again). So it was created, and
/// nothing has triggered it yet.
pub fn create_outcome(outcome: CreateOutcome, new_job: &JobId) -> CreateOutcome {
    match outcome {
        CreateOutcome::Replayed { job_id, .. } if job_id == *new_job => {
            CreateOutcome::Created { triggered: false }
        }
        other => other,
    }
}

/// From when an unfinished job counts as stranded if nothing triggers it (the reconciler then
/// triggers it again, once `stranded_after` has passed): a pending job from its creation or its
/// due time, whichever is later; a running one from the end of its lease (`lease_until`, or at
/// once without one). A terminal job is never stranded.
pub fn quiet_since(job: &Job, lease_until: Option<Timestamp>) -> Option<Timestamp> {
    match job.status {
        JobStatus::Pending => Some(
            job.scheduled_at
                .map_or(job.created_at, |due| due.max(job.created_at)),
        ),
        JobStatus::Running => Some(lease_until.unwrap_or(Timestamp(0))),
        JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled => None,
    }
}

/// Whether an `Idempotency-Key` record that expires at `expires_at` still names its job for a
/// submit at `now`, which then replays it. An expired record is taken over by the new job.
pub fn idempotency_key_holds(expires_at: Timestamp, now: Timestamp) -> bool {
    expires_at > now
}

/// Whether a claim refused by its condition was this very claim, applied by an earlier try whose
/// answer was lost: the job as the refusal saw it runs on the caller's lease token.
pub fn claim_was_applied(job: &Job, lease_token: Option<&str>, token: &str) -> bool {
    holds(job.status, lease_token, token)
}

/// Why a claim of `job` at `now` is refused, or `None` when the caller may take it.
///
/// `held_until` is the expiry of the lease the job carries, if a worker holds one (a released
/// lease has no token and holds nothing, whatever its retry time). The answers come in one order
/// on every store: unknown or expired (`Missing`), `Terminal`, a scheduled job before its time
/// (`NotDue`), then a live lease elsewhere (`Busy`).
pub fn claim_refusal(
    job: Option<&Job>,
    held_until: Option<Timestamp>,
    now: Timestamp,
) -> Option<ClaimOutcome> {
    let Some(job) = job.filter(|j| j.is_live(now)) else {
        return Some(ClaimOutcome::Missing);
    };
    if job.status.is_terminal() {
        return Some(ClaimOutcome::Terminal(job.clone()));
    }
    if let Some(due_at) = job.scheduled_at.filter(|due| *due > now) {
        return Some(ClaimOutcome::NotDue { due_at });
    }
    match held_until {
        Some(until) if job.status == JobStatus::Running && until > now => {
            Some(ClaimOutcome::Busy {
                lease_expires_at: until,
            })
        }
        _ => None,
    }
}

/// What a claim does, decided on the job as read.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimDecision {
    /// Take it; the job as the claim leaves it.
    Take(Job),
    /// Nothing to write: the refusal.
    Refuse(ClaimOutcome),
}

/// A claim decided on the job as read (see [`claim_refusal`]).
pub fn claim(job: Option<Job>, held_until: Option<Timestamp>, now: Timestamp) -> ClaimDecision {
    match (claim_refusal(job.as_ref(), held_until, now), job) {
        (None, Some(job)) => ClaimDecision::Take(claimed(job, now)),
        (Some(refusal), _) => ClaimDecision::Refuse(refusal),
        (None, None) => ClaimDecision::Refuse(ClaimOutcome::Missing),
    }
}

/// The job as a claim at `now` leaves it: running, started (the first claim's time
/// is kept), with this attempt counted.
pub fn claimed(job: Job, now: Timestamp) -> Job {
    Job {
        status: JobStatus::Running,
        started_at: job.started_at.or(Some(now)),
        attempts: next_attempt(job.attempts),
        ..job
    }
}

/// The number of the attempt after `attempts` counted ones. Stores write it as the count (a set,
/// never an increment), so a write applied twice (its answer lost, the SDK sending it again)
/// still counts the attempt once.
pub fn next_attempt(attempts: u32) -> u32 {
    attempts.saturating_add(1)
}

/// What a cancel of a job does, decided on the job as read.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelDecision {
    /// Unfinished: cancel it; the job as the cancel leaves it.
    Cancel(Job),
    /// Nothing to write: the answer as it stands.
    Answer(CancelOutcome),
}

/// Unknown or expired is `NotFound`; already cancelled is answered as such; completed or failed
/// is too late; pending or running is cancelled (a running job's worker sees it through the
/// store and stops).
pub fn cancel_outcome(job: Option<Job>, now: Timestamp, expires_at: Timestamp) -> CancelDecision {
    let Some(job) = job.filter(|j| j.is_live(now)) else {
        return CancelDecision::Answer(CancelOutcome::NotFound);
    };
    match job.status {
        JobStatus::Cancelled => CancelDecision::Answer(CancelOutcome::AlreadyCancelled(job)),
        JobStatus::Completed | JobStatus::Failed => {
            CancelDecision::Answer(CancelOutcome::Finished(job))
        }
        JobStatus::Pending | JobStatus::Running => CancelDecision::Cancel(Job {
            status: JobStatus::Cancelled,
            completed_at: Some(now),
            expires_at: Some(expires_at),
            ..job
        }),
    }
}

/// Whether a worker holding `token` may still write: the job is running on that token.
pub fn holds(status: JobStatus, lease_token: Option<&str>, token: &str) -> bool {
    status == JobStatus::Running && lease_token == Some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_is_quiet_from_its_due_time_or_its_lease_end_and_never_when_finished() {
        let mut job = job(JobStatus::Pending);
        job.created_at = Timestamp(100);
        assert_eq!(quiet_since(&job, None), Some(Timestamp(100)));
        job.scheduled_at = Some(Timestamp(500));
        assert_eq!(quiet_since(&job, None), Some(Timestamp(500)));
        job.scheduled_at = Some(Timestamp(50));
        assert_eq!(quiet_since(&job, None), Some(Timestamp(100)));
        job.status = JobStatus::Running;
        assert_eq!(
            quiet_since(&job, Some(Timestamp(900))),
            Some(Timestamp(900))
        );
        assert_eq!(quiet_since(&job, None), Some(Timestamp(0)));
        for status in [
            JobStatus::Completed,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ] {
            job.status = status;
            assert_eq!(quiet_since(&job, Some(Timestamp(900))), None);
        }
    }

    #[test]
    fn an_idempotency_key_holds_until_the_instant_it_expires() {
        let expires_at = Timestamp(1_000);
        assert!(idempotency_key_holds(expires_at, Timestamp(999)));
        assert!(!idempotency_key_holds(expires_at, Timestamp(1_000)));
        assert!(!idempotency_key_holds(expires_at, Timestamp(1_001)));
    }
    use std::sync::LazyLock;

    use crate::ids::{IdGenerator, JobId, TenantId};
    use crate::jobs::JobKind;

    static ID: LazyLock<JobId> = LazyLock::new(|| IdGenerator::new().job_id(Timestamp(0)));

    fn job(status: JobStatus) -> Job {
        Job {
            id: ID.clone(),
            tenant: TenantId::parse("acme").unwrap(),
            kind: JobKind::Async,
            status,
            endpoint: crate::ApiEndpoint::ChatCompletions,
            model: "m".into(),
            created_at: Timestamp(0),
            scheduled_at: None,
            scheduled_job_id: None,
            metadata: None,
            started_at: None,
            completed_at: None,
            expires_at: None,
            result: None,
            error: None,
            attempts: 0,
        }
    }

    const NOW: Timestamp = Timestamp(1_000);

    #[test]
    fn a_replay_naming_the_job_being_created_is_that_create_applied_earlier() {
        let replayed = |job_id: &JobId| CreateOutcome::Replayed {
            job_id: job_id.clone(),
            same_body: true,
        };
        assert_eq!(
            create_outcome(replayed(&ID), &ID),
            CreateOutcome::Created { triggered: false }
        );
        let ids = IdGenerator::new();
        let other = [ids.job_id(Timestamp(0)), ids.job_id(Timestamp(0))]
            .into_iter()
            .find(|id| *id != *ID)
            .unwrap();
        assert_eq!(create_outcome(replayed(&other), &ID), replayed(&other));
        let created = CreateOutcome::Created { triggered: true };
        assert_eq!(create_outcome(created.clone(), &ID), created);
    }

    #[test]
    fn a_refused_claim_was_applied_only_when_the_job_runs_on_the_callers_token() {
        assert!(claim_was_applied(
            &job(JobStatus::Running),
            Some("t1"),
            "t1"
        ));
        assert!(!claim_was_applied(
            &job(JobStatus::Running),
            Some("t2"),
            "t1"
        ));
        assert!(!claim_was_applied(&job(JobStatus::Running), None, "t1"));
        assert!(!claim_was_applied(
            &job(JobStatus::Completed),
            Some("t1"),
            "t1"
        ));
    }

    #[test]
    fn a_claim_of_nothing_or_an_expired_job_is_missing() {
        assert_eq!(claim_refusal(None, None, NOW), Some(ClaimOutcome::Missing));
        let expired = Job {
            expires_at: Some(NOW),
            ..job(JobStatus::Completed)
        };
        assert_eq!(
            claim_refusal(Some(&expired), None, NOW),
            Some(ClaimOutcome::Missing)
        );
    }

    #[test]
    fn a_claim_of_a_terminal_job_answers_it_terminal() {
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            let j = job(status);
            assert_eq!(
                claim_refusal(Some(&j), None, NOW),
                Some(ClaimOutcome::Terminal(j.clone()))
            );
        }
    }

    #[test]
    fn a_claim_before_the_due_time_is_not_due_even_when_a_lease_is_live() {
        let j = Job {
            scheduled_at: Some(Timestamp(5_000)),
            ..job(JobStatus::Running)
        };
        assert_eq!(
            claim_refusal(Some(&j), Some(Timestamp(9_000)), NOW),
            Some(ClaimOutcome::NotDue {
                due_at: Timestamp(5_000)
            })
        );
    }

    #[test]
    fn a_claim_of_a_job_under_a_live_lease_is_busy_until_it_ends() {
        assert_eq!(
            claim_refusal(Some(&job(JobStatus::Running)), Some(Timestamp(2_000)), NOW),
            Some(ClaimOutcome::Busy {
                lease_expires_at: Timestamp(2_000)
            })
        );
    }

    #[test]
    fn a_pending_job_a_due_one_or_one_whose_lease_ended_may_be_taken() {
        let due = Job {
            scheduled_at: Some(NOW),
            ..job(JobStatus::Pending)
        };
        assert_eq!(claim_refusal(Some(&due), None, NOW), None);
        assert_eq!(
            claim_refusal(Some(&job(JobStatus::Running)), Some(NOW), NOW),
            None
        );
        assert_eq!(
            claim_refusal(Some(&job(JobStatus::Running)), None, NOW),
            None
        );
    }

    #[test]
    fn a_claim_takes_a_pending_job_and_refuses_a_missing_one() {
        let ClaimDecision::Take(taken) = claim(Some(job(JobStatus::Pending)), None, NOW) else {
            panic!("not taken");
        };
        assert_eq!(taken.status, JobStatus::Running);
        assert_eq!(
            claim(None, None, NOW),
            ClaimDecision::Refuse(ClaimOutcome::Missing)
        );
    }

    #[test]
    fn a_claim_counts_the_attempt_and_keeps_the_first_start() {
        let first = claimed(job(JobStatus::Pending), NOW);
        assert_eq!(
            (first.status, first.started_at, first.attempts),
            (JobStatus::Running, Some(NOW), 1)
        );
        let again = claimed(first, Timestamp(7_000));
        assert_eq!((again.started_at, again.attempts), (Some(NOW), 2));
    }

    #[test]
    fn cancel_of_an_unfinished_job_cancels_it_with_its_retention() {
        for status in JobStatus::UNFINISHED {
            let CancelDecision::Cancel(after) =
                cancel_outcome(Some(job(status)), NOW, Timestamp(9))
            else {
                panic!("{status:?} was not cancelled");
            };
            assert_eq!(after.status, JobStatus::Cancelled);
            assert_eq!(
                (after.completed_at, after.expires_at),
                (Some(NOW), Some(Timestamp(9)))
            );
        }
    }

    #[test]
    fn cancel_of_a_finished_job_answers_without_writing() {
        let answer = |status| cancel_outcome(Some(job(status)), NOW, Timestamp(9));
        assert_eq!(
            answer(JobStatus::Cancelled),
            CancelDecision::Answer(CancelOutcome::AlreadyCancelled(job(JobStatus::Cancelled)))
        );
        for status in [JobStatus::Completed, JobStatus::Failed] {
            assert_eq!(
                answer(status),
                CancelDecision::Answer(CancelOutcome::Finished(job(status)))
            );
        }
        assert_eq!(
            cancel_outcome(None, NOW, Timestamp(9)),
            CancelDecision::Answer(CancelOutcome::NotFound)
        );
    }

    #[test]
    fn only_the_running_token_holds() {
        assert!(holds(JobStatus::Running, Some("t"), "t"));
        assert!(!holds(JobStatus::Running, Some("u"), "t"));
        assert!(!holds(JobStatus::Cancelled, Some("t"), "t"));
        assert!(!holds(JobStatus::Running, None, "t"));
    }
}

//! The job store in memory. Like the real adapters it loads a job, asks core's decisions
//! (`job::decisions`) and writes only what they allow; it adds no rule of its own.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::jobs::decisions::{self, CancelDecision, ClaimDecision};
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::list::{ListQuery, Page};
use prism_core::ports::{
    CancelOutcome, ClaimOutcome, CreateOutcome, IdempotencyClaim, JobStore, Lease,
};
use prism_core::responses::events::RecordedEvent;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::{Job, JobError, JobId, JobKind, JobStatus, StoreError, TenantId, Timestamp};

use super::lock;

/// A stored job: the job as the API shows it, its request, and the lease a worker holds. A
/// released lease keeps its time (the retry time) without a token, as the real stores do.
#[derive(Debug, Clone)]
struct Row {
    job: Job,
    request: Bytes,
    lease_token: Option<String>,
    lease_until: Option<Timestamp>,
}

impl Row {
    fn holds(&self, token: &str) -> bool {
        decisions::holds(self.job.status, self.lease_token.as_deref(), token)
    }

    /// Every write of a status goes through here, so the fake itself cannot make a transition
    /// the state machine forbids.
    fn set_status(&mut self, next: JobStatus) {
        assert!(
            self.job.status == next || self.job.status.can_become(next),
            "the memory job store was asked for {:?} -> {next:?}",
            self.job.status
        );
        self.job.status = next;
    }

    fn end(&mut self, next: JobStatus, now: Timestamp, expires_at: Timestamp) {
        self.set_status(next);
        self.job.completed_at = Some(now);
        self.job.expires_at = Some(expires_at);
        self.lease_token = None;
        self.lease_until = None;
    }
}

#[derive(Debug, Clone)]
struct Remembered {
    job_id: JobId,
    body_hash: String,
    expires_at: Timestamp,
}

#[derive(Default)]
struct State {
    jobs: HashMap<JobId, Row>,
    idempotency: HashMap<(TenantId, String), Remembered>,
    events: HashMap<JobId, std::collections::BTreeMap<u64, String>>,
    /// Every count a finish added, as it was added.
    counted: Vec<(TenantId, UsageCount)>,
}

impl State {
    fn row(&self, tenant: &TenantId, id: &JobId) -> Option<&Row> {
        self.jobs.get(id).filter(|r| &r.job.tenant == tenant)
    }

    fn row_mut(&mut self, job: &JobRef) -> Option<&mut Row> {
        self.jobs
            .get_mut(&job.id)
            .filter(|r| r.job.tenant == job.tenant)
    }

    /// The tenant's job unless its retention has passed, what every real store reads first.
    fn live(&self, tenant: &TenantId, id: &JobId, now: Timestamp) -> Option<Job> {
        self.row(tenant, id)
            .map(|r| r.job.clone())
            .filter(|j| j.is_live(now))
    }
}

/// The `JobStore` port in memory. Its create queues nothing (as on DynamoDB): the service
/// triggers the job itself.
#[derive(Default)]
pub struct MemoryJobStore {
    state: Mutex<State>,
}

impl MemoryJobStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lease a job is held under, for tests that assert on it.
    pub fn lease_of(&self, job: &JobRef) -> (Option<String>, Option<Timestamp>) {
        let state = lock(&self.state);
        state
            .jobs
            .get(&job.id)
            .map_or((None, None), |r| (r.lease_token.clone(), r.lease_until))
    }
}

#[async_trait]
impl JobStore for MemoryJobStore {
    async fn create(
        &self,
        job: &NewJob,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut state = lock(&self.state);
        if let Some(claim) = idempotency {
            let key = (job.tenant.clone(), claim.key.clone());
            if let Some(seen) = state
                .idempotency
                .get(&key)
                .filter(|seen| seen.expires_at > job.created_at)
            {
                return Ok(CreateOutcome::Replayed {
                    job_id: seen.job_id.clone(),
                    same_body: seen.body_hash == claim.body_hash,
                });
            }
            state.idempotency.insert(
                key,
                Remembered {
                    job_id: job.id.clone(),
                    body_hash: claim.body_hash.clone(),
                    expires_at: claim.expires_at,
                },
            );
        }
        // A run of a recurring schedule already made by this same firing stays as it is.
        if state.jobs.contains_key(&job.id) {
            return Ok(CreateOutcome::Created { triggered: false });
        }
        state.jobs.insert(
            job.id.clone(),
            Row {
                job: job.to_job(),
                request: job.request.clone(),
                lease_token: None,
                lease_until: None,
            },
        );
        Ok(CreateOutcome::Created { triggered: false })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        Ok(lock(&self.state).live(tenant, id, now))
    }

    async fn request_body(&self, job: &JobRef) -> Result<Option<Bytes>, StoreError> {
        Ok(lock(&self.state)
            .row(&job.tenant, &job.id)
            .map(|r| r.request.clone()))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        query: &ListQuery,
        now: Timestamp,
    ) -> Result<Page<Job>, StoreError> {
        let state = lock(&self.state);
        let mut items: Vec<Job> = state
            .jobs
            .values()
            .map(|r| &r.job)
            .filter(|j| &j.tenant == tenant && j.kind == kind && j.is_live(now))
            .filter(|j| query.after.as_ref().is_none_or(|after| &j.id < after))
            .filter(|j| query.status.is_none_or(|s| j.status == s))
            .filter(|j| {
                query
                    .scheduled_job_id
                    .as_ref()
                    .is_none_or(|s| j.scheduled_job_id.as_ref() == Some(s))
            })
            .cloned()
            .collect();
        items.sort_by(|a, b| b.id.cmp(&a.id));
        let has_more = items.len() > query.limit;
        items.truncate(query.limit);
        Ok(Page { items, has_more })
    }

    async fn claim(
        &self,
        job: &JobRef,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let mut state = lock(&self.state);
        let current = state.live(&job.tenant, &job.id, now);
        let held_until = state
            .row(&job.tenant, &job.id)
            .filter(|r| r.lease_token.is_some())
            .and_then(|r| r.lease_until);
        let claimed = match decisions::claim(current, held_until, now) {
            ClaimDecision::Take(claimed) => claimed,
            ClaimDecision::Refuse(refusal) => return Ok(refusal),
        };
        let Some(row) = state.row_mut(job) else {
            return Ok(ClaimOutcome::Missing);
        };
        row.set_status(claimed.status);
        row.job = claimed.clone();
        row.lease_token = Some(lease.token.clone());
        row.lease_until = Some(lease.expires_at);
        Ok(ClaimOutcome::Claimed(claimed))
    }

    async fn begin_attempt(
        &self,
        job: &JobRef,
        token: &str,
        attempt: u32,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        let Some(row) = state.row_mut(job).filter(|r| r.holds(token)) else {
            return Ok(false);
        };
        row.lease_until = Some(lease_until);
        row.job.attempts = attempt;
        Ok(true)
    }

    async fn release(
        &self,
        job: &JobRef,
        token: &str,
        retry_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        let Some(row) = state.row_mut(job).filter(|r| r.holds(token)) else {
            return Ok(false);
        };
        row.lease_token = None;
        row.lease_until = Some(retry_at);
        Ok(true)
    }

    async fn finish(
        &self,
        job: &JobRef,
        token: &str,
        outcome: &Finish,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        let Some(row) = state.row_mut(job).filter(|r| r.holds(token)) else {
            return Ok(false);
        };
        match outcome {
            Finish::Completed { result, .. } => row.job.result = Some(result.clone()),
            Finish::Failed { error } => row.job.error = Some(error.clone()),
        }
        row.end(outcome.status(), now, expires_at);
        if let Finish::Completed {
            counted: Some(count),
            ..
        } = outcome
        {
            state.counted.push((job.tenant.clone(), count.clone()));
        }
        Ok(true)
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        Ok(lock(&self.state)
            .counted
            .iter()
            .filter(|(t, c)| t == tenant && from <= c.day && c.day <= to)
            .map(|(_, c)| c.clone())
            .collect())
    }

    async fn still_holds(&self, job: &JobRef, token: &str) -> Result<bool, StoreError> {
        Ok(lock(&self.state)
            .row(&job.tenant, &job.id)
            .is_some_and(|r| r.holds(token)))
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let mut state = lock(&self.state);
        let current = state.live(tenant, id, now);
        match decisions::cancel_outcome(current, now, expires_at) {
            CancelDecision::Answer(outcome) => Ok(outcome),
            CancelDecision::Cancel(cancelled) => {
                if let Some(row) = state.jobs.get_mut(id) {
                    row.end(cancelled.status, now, expires_at);
                    row.job = cancelled.clone();
                }
                Ok(CancelOutcome::Cancelled(cancelled))
            }
        }
    }

    async fn fail_unfinished(
        &self,
        job: &JobRef,
        error: &JobError,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        let Some(row) = state.row_mut(job).filter(|r| !r.job.status.is_terminal()) else {
            return Ok(false);
        };
        row.job.error = Some(error.clone());
        row.end(JobStatus::Failed, now, expires_at);
        Ok(true)
    }

    async fn stranded(&self, before: Timestamp, limit: usize) -> Result<Vec<JobRef>, StoreError> {
        // This store cannot see the queue (as on DynamoDB), so every old unfinished job counts.
        let state = lock(&self.state);
        let mut found: Vec<JobRef> = state
            .jobs
            .values()
            .filter(|r| decisions::quiet_since(&r.job, r.lease_until).is_some_and(|t| t < before))
            .map(|r| r.job.job_ref())
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<u64, StoreError> {
        let mut state = lock(&self.state);
        let expired: Vec<JobId> = state
            .jobs
            .values()
            .filter(|r| !r.job.is_live(now))
            .map(|r| r.job.id.clone())
            .take(limit)
            .collect();
        for id in &expired {
            state.jobs.remove(id);
        }
        state.idempotency.retain(|_, seen| seen.expires_at > now);
        Ok(expired.len() as u64)
    }

    async fn append_events(
        &self,
        job: &JobRef,
        token: &str,
        events: &[RecordedEvent],
    ) -> Result<bool, StoreError> {
        let mut state = lock(&self.state);
        if !state
            .row(&job.tenant, &job.id)
            .is_some_and(|r| r.holds(token))
        {
            return Ok(false);
        }
        let recorded = state.events.entry(job.id.clone()).or_default();
        for event in events {
            recorded
                .entry(event.sequence_number)
                .or_insert_with(|| event.text.clone());
        }
        Ok(true)
    }

    async fn events_after(
        &self,
        job: &JobRef,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = lock(&self.state);
        let Some(recorded) = state.events.get(&job.id) else {
            return Ok(Vec::new());
        };
        Ok(recorded
            .iter()
            .filter(|(seq, _)| after.is_none_or(|a| **seq > a))
            .take(limit)
            .map(|(seq, text)| RecordedEvent {
                sequence_number: *seq,
                text: text.clone(),
            })
            .collect())
    }
}

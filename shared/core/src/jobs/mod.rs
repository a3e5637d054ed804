//! Jobs (async and scheduled completions): their statuses, the legal transitions between them,
//! and the error a failed job reports.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::endpoint::ApiEndpoint;
use crate::ids::{JobId, TenantId};
use crate::metadata::Metadata;
use crate::usage::counters::UsageCount;

pub mod decisions;
pub mod run;
pub mod scheduled;
pub mod service;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Async,
    /// Runs like an async job, but never before its `scheduled_at`.
    Scheduled,
    /// A Responses API request created with `background: true` (`resp_` ids).
    Response,
}

impl JobKind {
    pub const ALL: [JobKind; 3] = [JobKind::Async, JobKind::Scheduled, JobKind::Response];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Async => "async",
            JobKind::Scheduled => "scheduled",
            JobKind::Response => "response",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "async" => Some(JobKind::Async),
            "scheduled" => Some(JobKind::Scheduled),
            "response" => Some(JobKind::Response),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Pending,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub const ALL: [JobStatus; 5] = [
        JobStatus::Pending,
        JobStatus::Running,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The statuses a job leaves only by reaching a terminal one: what cancel and dead-lettering
    /// act on, and what the reconciler looks after.
    pub const UNFINISHED: [JobStatus; 2] = [JobStatus::Pending, JobStatus::Running];

    pub fn is_terminal(self) -> bool {
        !Self::UNFINISHED.contains(&self)
    }

    /// The state machine every store enforces with its conditional writes.
    pub fn can_become(self, next: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, next),
            (Pending, Running)
                | (Running, Running) // a new lease after the old one expired or was released
                | (Running, Completed)
                | (Running, Failed)
                | (Pending, Failed) // dead-lettered before it ever ran
                | (Pending, Cancelled)
                | (Running, Cancelled)
        )
    }
}

/// What a failed job reports: OpenAI's error shape without `param`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JobError {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: Option<String>,
}

impl JobError {
    pub fn new(message: impl Into<String>, kind: impl Into<String>, code: Option<&str>) -> Self {
        Self {
            message: message.into(),
            kind: kind.into(),
            code: code.map(str::to_owned),
        }
    }

    pub fn processing_failed() -> Self {
        Self::new(
            "The job could not be processed after repeated delivery attempts.",
            "server_error",
            Some("processing_failed"),
        )
    }
}

/// What names a job everywhere outside the HTTP layer (queue messages, worker writes): the
/// owner is part of the key, so storage can scope every access by tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobRef {
    pub tenant: TenantId,
    pub id: JobId,
}

/// A job as the store holds it. `result` is the upstream's answer from `endpoint` (a chat
/// completion, an embedding list, ...), kept as raw JSON so it is relayed byte for byte.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub tenant: TenantId,
    pub kind: JobKind,
    pub status: JobStatus,
    /// Jobs stored before endpoints existed read as chat completions.
    pub endpoint: ApiEndpoint,
    pub model: String,
    pub created_at: Timestamp,
    /// Scheduled jobs only: no worker starts the job before then.
    pub scheduled_at: Option<Timestamp>,
    /// A run of a recurring schedule: that schedule (an async job in every other way).
    pub scheduled_job_id: Option<JobId>,
    pub metadata: Option<Metadata>,
    pub started_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub result: Option<String>,
    pub error: Option<JobError>,
    /// Upstream attempts begun so far, across deliveries.
    pub attempts: u32,
}

impl Job {
    pub fn job_ref(&self) -> JobRef {
        JobRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }

    /// Whether it is still kept: a job past its retention reads as unknown, since storage may
    /// delete it lazily (DynamoDB's TTL lags; SQLite purges in batches).
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.expires_at.is_none_or(|e| e > now)
    }
}

/// A job about to be written for the first time (always `pending`).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: JobId,
    pub tenant: TenantId,
    pub kind: JobKind,
    pub endpoint: ApiEndpoint,
    pub model: String,
    pub request: Bytes,
    pub created_at: Timestamp,
    pub scheduled_at: Option<Timestamp>,
    pub scheduled_job_id: Option<JobId>,
    pub metadata: Option<Metadata>,
}

impl NewJob {
    pub fn job_ref(&self) -> JobRef {
        JobRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }

    pub fn to_job(&self) -> Job {
        Job {
            id: self.id.clone(),
            tenant: self.tenant.clone(),
            kind: self.kind,
            status: JobStatus::Pending,
            endpoint: self.endpoint,
            model: self.model.clone(),
            created_at: self.created_at,
            scheduled_at: self.scheduled_at,
            scheduled_job_id: self.scheduled_job_id.clone(),
            metadata: self.metadata.clone(),
            started_at: None,
            completed_at: None,
            expires_at: None,
            result: None,
            error: None,
            attempts: 0,
        }
    }
}

/// How a job ends when its worker finishes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Completed {
        result: String,
        /// What the completion adds to the tenant's usage counters (`None`: nothing to count).
        counted: Option<UsageCount>,
    },
    Failed {
        error: JobError,
    },
}

impl Finish {
    /// A completion of `job` with `result`, finished at `now`, counted as the counters count it.
    pub fn completed(job: &Job, result: String, now: Timestamp) -> Finish {
        let counted = UsageCount::of_completed_job(job.kind, &job.model, &result, now);
        Finish::Completed { result, counted }
    }

    pub fn status(&self) -> JobStatus {
        match self {
            Finish::Completed { .. } => JobStatus::Completed,
            Finish::Failed { .. } => JobStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_statuses_allow_no_transition() {
        for from in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            for to in JobStatus::ALL {
                assert!(!from.can_become(to), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn status_names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(JobStatus::parse("queued"), None);
    }
}

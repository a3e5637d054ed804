//! Webhooks for finished work: the event kinds (listed once), the event and its payload, the
//! per-tenant endpoints, and the record of delivery attempts. Events are written by the store in
//! the same conditional write that makes a job or batch terminal (an outbox); [`deliver`] sends
//! them, [`decisions`] decides every retry and disable, [`signing`] signs them with Standard
//! Webhooks, [`target`] refuses unsafe URLs and addresses, [`service`] is the HTTP API.

pub mod decisions;
pub mod deliver;
pub mod service;
pub mod signing;
pub mod target;

use serde::{Deserialize, Serialize};

use crate::batches::BatchOutcome;
use crate::clock::Timestamp;
use crate::ids::TenantId;
use crate::jobs::{JobKind, JobStatus};

/// A kind of event, with OpenAI's names. The one list every store, filter and payload speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "batch.completed")]
    BatchCompleted,
    #[serde(rename = "batch.failed")]
    BatchFailed,
    #[serde(rename = "batch.expired")]
    BatchExpired,
    #[serde(rename = "batch.cancelled")]
    BatchCancelled,
    #[serde(rename = "async.job.completed")]
    AsyncJobCompleted,
    #[serde(rename = "async.job.failed")]
    AsyncJobFailed,
    #[serde(rename = "async.job.cancelled")]
    AsyncJobCancelled,
    #[serde(rename = "scheduled.job.completed")]
    ScheduledJobCompleted,
    #[serde(rename = "scheduled.job.failed")]
    ScheduledJobFailed,
    #[serde(rename = "scheduled.job.cancelled")]
    ScheduledJobCancelled,
    #[serde(rename = "response.completed")]
    ResponseCompleted,
    #[serde(rename = "response.failed")]
    ResponseFailed,
    #[serde(rename = "response.cancelled")]
    ResponseCancelled,
    /// Sent by `POST /v1/webhook_endpoints/{id}/test` to that endpoint only.
    #[serde(rename = "webhook_endpoint.test")]
    EndpointTest,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
        EventKind::BatchCompleted,
        EventKind::BatchFailed,
        EventKind::BatchExpired,
        EventKind::BatchCancelled,
        EventKind::AsyncJobCompleted,
        EventKind::AsyncJobFailed,
        EventKind::AsyncJobCancelled,
        EventKind::ScheduledJobCompleted,
        EventKind::ScheduledJobFailed,
        EventKind::ScheduledJobCancelled,
        EventKind::ResponseCompleted,
        EventKind::ResponseFailed,
        EventKind::ResponseCancelled,
        EventKind::EndpointTest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::BatchCompleted => "batch.completed",
            EventKind::BatchFailed => "batch.failed",
            EventKind::BatchExpired => "batch.expired",
            EventKind::BatchCancelled => "batch.cancelled",
            EventKind::AsyncJobCompleted => "async.job.completed",
            EventKind::AsyncJobFailed => "async.job.failed",
            EventKind::AsyncJobCancelled => "async.job.cancelled",
            EventKind::ScheduledJobCompleted => "scheduled.job.completed",
            EventKind::ScheduledJobFailed => "scheduled.job.failed",
            EventKind::ScheduledJobCancelled => "scheduled.job.cancelled",
            EventKind::ResponseCompleted => "response.completed",
            EventKind::ResponseFailed => "response.failed",
            EventKind::ResponseCancelled => "response.cancelled",
            EventKind::EndpointTest => "webhook_endpoint.test",
        }
    }

    pub fn parse(s: &str) -> Option<EventKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The event a job's terminal status announces; `None` for a status that is not terminal.
    pub fn of_job(kind: JobKind, status: JobStatus) -> Option<EventKind> {
        Some(match (kind, status) {
            (JobKind::Async, JobStatus::Completed) => EventKind::AsyncJobCompleted,
            (JobKind::Async, JobStatus::Failed) => EventKind::AsyncJobFailed,
            (JobKind::Async, JobStatus::Cancelled) => EventKind::AsyncJobCancelled,
            (JobKind::Scheduled, JobStatus::Completed) => EventKind::ScheduledJobCompleted,
            (JobKind::Scheduled, JobStatus::Failed) => EventKind::ScheduledJobFailed,
            (JobKind::Scheduled, JobStatus::Cancelled) => EventKind::ScheduledJobCancelled,
            (JobKind::Response, JobStatus::Completed) => EventKind::ResponseCompleted,
            (JobKind::Response, JobStatus::Failed) => EventKind::ResponseFailed,
            (JobKind::Response, JobStatus::Cancelled) => EventKind::ResponseCancelled,
            (_, JobStatus::Pending | JobStatus::Running) => return None,
        })
    }

    /// The event a finalized batch announces.
    pub fn of_batch(outcome: BatchOutcome) -> EventKind {
        match outcome {
            BatchOutcome::Completed => EventKind::BatchCompleted,
            BatchOutcome::Cancelled => EventKind::BatchCancelled,
            BatchOutcome::Expired => EventKind::BatchExpired,
        }
    }
}

/// An event as recorded in the outbox. Its id is the `webhook-id` of every delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: String,
    pub tenant: TenantId,
    pub kind: EventKind,
    /// The job, batch or endpoint the event is about (`data.id`).
    pub subject: String,
    pub created_at: Timestamp,
    /// Set for a test event or a redelivery: only this endpoint gets it.
    pub endpoint: Option<String>,
}

impl WebhookEvent {
    /// The event announcing that `subject` became terminal. Its id is derived from the subject,
    /// so a job or batch (terminal once) has exactly one, whichever write records it.
    pub fn for_subject(
        tenant: &TenantId,
        kind: EventKind,
        subject: &str,
        at: Timestamp,
    ) -> WebhookEvent {
        WebhookEvent {
            id: format!("evt_{subject}"),
            tenant: tenant.clone(),
            kind,
            subject: subject.to_owned(),
            created_at: at,
            endpoint: None,
        }
    }

    /// The body sent: `{id, object: "event", type, created_at, data: {id}}`, as OpenAI's; ids
    /// only, never a prompt or a completion.
    pub fn payload(&self) -> String {
        serde_json::json!({
            "id": self.id,
            "object": "event",
            "type": self.kind.as_str(),
            "created_at": self.created_at.unix_seconds(),
            "data": {"id": self.subject},
        })
        .to_string()
    }

    pub fn event_ref(&self) -> EventRef {
        EventRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }
}

/// What a queue message names for the webhooks stage.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventRef {
    pub tenant: TenantId,
    pub id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointStatus {
    Enabled,
    /// Failed every delivery for the disable window; shown on the endpoint.
    Disabled,
}

impl EndpointStatus {
    pub const ALL: [EndpointStatus; 2] = [EndpointStatus::Enabled, EndpointStatus::Disabled];

    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Enabled => "enabled",
            EndpointStatus::Disabled => "disabled",
        }
    }
}

/// A signing secret; a rotated-out one keeps signing until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Secret {
    pub value: String,
    pub expires_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub tenant: TenantId,
    pub url: String,
    /// Empty: every kind.
    pub events: Vec<EventKind>,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub created_at: Timestamp,
    /// Newest first.
    pub secrets: Vec<Secret>,
    /// Since when every delivery to it has failed; cleared by a success.
    pub failing_since: Option<Timestamp>,
    pub disabled_at: Option<Timestamp>,
}

/// Where one event stands with one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryState {
    pub event_id: String,
    pub endpoint_id: String,
    pub attempts: u32,
    pub first_attempt_at: Option<Timestamp>,
    /// When the next attempt is due; `None` once settled.
    pub next_at: Option<Timestamp>,
    pub outcome: DeliveryOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Pending,
    Delivered,
    /// Retried for the whole retry window without a 2xx.
    GaveUp,
}

impl DeliveryState {
    pub fn new(event_id: &str, endpoint_id: &str, now: Timestamp) -> DeliveryState {
        DeliveryState {
            event_id: event_id.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            attempts: 0,
            first_attempt_at: None,
            next_at: Some(now),
            outcome: DeliveryOutcome::Pending,
        }
    }
}

/// One attempt, as `GET /v1/webhook_endpoints/{id}/deliveries` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: String,
    pub endpoint_id: String,
    pub event_id: String,
    pub event_type: EventKind,
    pub attempt: u32,
    /// The receiver's status; `None` when no answer came (timeout, connection, refused target).
    pub status_code: Option<u16>,
    pub latency_ms: u64,
    pub error: Option<String>,
    pub succeeded: bool,
    pub created_at: Timestamp,
}

/// Knobs of the webhooks feature (`[webhooks]` in the configuration).
#[derive(Debug, Clone)]
pub struct WebhookPolicy {
    /// Lets endpoints target loopback, private and link-local addresses, and plain http
    /// (tests, a receiver on the same box).
    pub allow_private_targets: bool,
    /// The first retry's base wait; each later one doubles it (see [`decisions::retry_wait`]).
    pub retry_base: std::time::Duration,
}

impl Default for WebhookPolicy {
    fn default() -> Self {
        Self {
            allow_private_targets: false,
            retry_base: decisions::DEFAULT_RETRY_BASE,
        }
    }
}

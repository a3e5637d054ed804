//! Async jobs (`/async`) and scheduled jobs (`/scheduled`): the same job object under two
//! prefixes, read, listed and cancelled alike; scheduled jobs are also created here.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Client, ClientError, Job, Page, path_id};

/// Which of the two job collections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Async,
    Scheduled,
}

impl JobKind {
    fn path(self) -> &'static str {
        match self {
            JobKind::Async => "/async",
            JobKind::Scheduled => "/scheduled",
        }
    }
}

/// A listing's filters, each optional as in the API.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub after: Option<String>,
    pub status: Option<String>,
}

pub async fn get(client: &Client, kind: JobKind, id: &str) -> Result<Job, ClientError> {
    client
        .json(
            client.request(Method::GET, &format!("{}/{}", kind.path(), path_id(id)?)),
            "a job",
        )
        .await
}

pub async fn list(
    client: &Client,
    kind: JobKind,
    query: &ListQuery,
) -> Result<Page<Job>, ClientError> {
    // An absent value leaves its pair out of the query string.
    let pairs = [
        ("limit", query.limit.map(|l| l.to_string())),
        ("after", query.after.clone()),
        ("status", query.status.clone()),
    ];
    client
        .json(
            client.request(Method::GET, kind.path()).query(&pairs),
            "a list of jobs",
        )
        .await
}

/// Cancels the job: Prism answers it `cancelled`, or a 409 for one already finished.
pub async fn cancel(client: &Client, kind: JobKind, id: &str) -> Result<Job, ClientError> {
    client
        .json(
            client.request(Method::DELETE, &format!("{}/{}", kind.path(), path_id(id)?)),
            "a job",
        )
        .await
}

/// What `POST /scheduled` takes: when, the chat completion body, and optional metadata.
#[derive(Debug, Clone)]
pub struct NewScheduledJob {
    /// RFC 3339 with an offset.
    pub scheduled_at: String,
    pub request: Value,
    pub metadata: Map<String, Value>,
    /// Makes the create safe to repeat (same key and body: the same job).
    pub idempotency_key: Option<String>,
}

pub async fn schedule(client: &Client, job: &NewScheduledJob) -> Result<Job, ClientError> {
    let mut body = json!({"scheduled_at": job.scheduled_at, "request": job.request});
    if !job.metadata.is_empty() {
        body["metadata"] = Value::Object(job.metadata.clone());
    }
    let mut request = client.request(Method::POST, "/scheduled").json(&body);
    if let Some(key) = &job.idempotency_key {
        request = request.header("Idempotency-Key", key);
    }
    client.json(request, "a scheduled job").await
}

//! The background-response services behind the HTTP routes: create (stored as a job of kind
//! `response` and triggered like an async job), retrieve, cancel, and the recorded stream a
//! client resumes with `starting_after`.

use std::time::Duration;

use bytes::Bytes;
use futures::Stream;

use crate::ApiEndpoint;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::TenantId;
use crate::jobs::JobStatus;
use crate::jobs::service::{cancel_job, create_job, get_job, model_not_found};
use crate::jobs::{Job, JobKind, NewJob};
use crate::responses::events::{RecordedEvent, final_response};
use crate::responses::{ResponseRequestSummary, response_object, summarize_response_request};

/// How often a resumed stream looks for events the worker has not recorded yet.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Events read from the store at once by a resumed stream.
const FOLLOW_PAGE: usize = 500;

/// Stores a `background: true` request as a `queued` response and triggers its worker. The
/// client's connection plays no further part: the worker calls the provider. A replayed
/// `Idempotency-Key` answers the original response.
#[tracing::instrument(skip_all, fields(tenant = %tenant, job_id))]
pub async fn create_background_response(
    deps: &Deps,
    tenant: &TenantId,
    body: Bytes,
    summary: ResponseRequestSummary,
    idempotency_key: Option<&str>,
) -> Result<Job, ServiceError> {
    if !deps.upstream.routes(&summary.model) {
        return Err(model_not_found(&summary.model));
    }
    let now = deps.clock.now();
    let job = NewJob {
        id: deps.ids.response_id(now),
        tenant: tenant.clone(),
        kind: JobKind::Response,
        endpoint: ApiEndpoint::Responses,
        model: summary.model,
        request: body,
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    Ok(create_job(deps, job, idempotency_key).await?.job)
}

fn as_response_error(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::NotFound { id, .. } => ServiceError::NotFound {
            what: "response",
            id,
        },
        other => other,
    }
}

/// One of the tenant's background responses; another tenant's is as unknown as a made-up id.
pub async fn get_response(deps: &Deps, tenant: &TenantId, id: &str) -> Result<Job, ServiceError> {
    get_job(deps, tenant, JobKind::Response, id)
        .await
        .map_err(as_response_error)
}

/// Cancels a queued or in-progress background response; cancelling a cancelled one answers it
/// again (idempotent), a finished one is a conflict.
pub async fn cancel_response(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Job, ServiceError> {
    cancel_job(deps, tenant, JobKind::Response, id)
        .await
        .map_err(as_response_error)
}

/// The recorded events after `starting_after`, then the ones still arriving, until the
/// response is terminal and every recorded event was sent. Only for a response created with
/// `stream: true`.
pub async fn recorded_stream(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    starting_after: Option<u64>,
) -> Result<impl Stream<Item = RecordedEvent> + Send + 'static, ServiceError> {
    let job = get_response(deps, tenant, id).await?;
    let body = deps.jobs.request_body(&job.job_ref()).await?;
    let streamed = body
        .as_deref()
        .and_then(|b| summarize_response_request(b).ok())
        .is_some_and(|s| s.stream);
    if !streamed {
        return Err(ServiceError::invalid(
            "This response was not created with 'stream: true', so it has no stream to resume.",
            Some("stream"),
            Some("invalid_value"),
        ));
    }
    let state = Follow {
        deps: deps.clone(),
        job,
        after: starting_after,
        buffered: Vec::new().into_iter(),
        finished: false,
        saw_final: false,
        closed: false,
    };
    Ok(futures::stream::unfold(state, Follow::next))
}

impl Follow {
    /// A response that failed without the provider's own terminal event (an upstream error
    /// before or during the stream, a cap, a crash) still ends its stream with a
    /// `response.failed` event stating why, numbered after the last one recorded.
    async fn closing_event(&self) -> Option<RecordedEvent> {
        if self.saw_final {
            return None;
        }
        let job = self
            .deps
            .jobs
            .get(&self.job.tenant, &self.job.id, self.deps.clock.now())
            .await
            .ok()??;
        if job.status != JobStatus::Failed {
            return None;
        }
        let sequence_number = self.after.map_or(0, |a| a + 1);
        let data = serde_json::json!({
            "type": "response.failed",
            "sequence_number": sequence_number,
            "response": response_object(&job),
        });
        Some(RecordedEvent {
            sequence_number,
            text: format!("event: response.failed\ndata: {data}"),
        })
    }
}

struct Follow {
    deps: Deps,
    job: Job,
    after: Option<u64>,
    buffered: std::vec::IntoIter<RecordedEvent>,
    /// The job was terminal at the last read: one more empty page ends the stream.
    finished: bool,
    /// The last event sent was the provider's terminal one (`response.completed`, ...).
    saw_final: bool,
    /// The stream has ended (after its closing event, if any).
    closed: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(RecordedEvent, Self)> {
        if self.closed {
            return None;
        }
        loop {
            if let Some(event) = self.buffered.next() {
                self.after = Some(event.sequence_number);
                self.saw_final = final_response(&event).is_some();
                return Some((event, self));
            }
            let job_ref = self.job.job_ref();
            // Whether the job was terminal is read before the page: an event recorded before
            // the terminal write is then always in the page.
            let terminal = match self
                .deps
                .jobs
                .get(&self.job.tenant, &self.job.id, self.deps.clock.now())
                .await
            {
                Ok(Some(job)) => job.status.is_terminal(),
                Ok(None) => true,
                Err(error) => {
                    tracing::warn!(%error, "could not read the response while following its stream");
                    false
                }
            };
            let page = match self
                .deps
                .jobs
                .events_after(&job_ref, self.after, FOLLOW_PAGE)
                .await
            {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "could not read recorded events; ending the stream");
                    return None;
                }
            };
            if page.is_empty() {
                if terminal || self.finished {
                    let closing = self.closing_event().await;
                    self.closed = true;
                    return closing.map(|event| (event, self));
                }
                tokio::time::sleep(FOLLOW_POLL).await;
                continue;
            }
            self.finished = terminal;
            self.buffered = page.into_iter();
        }
    }
}

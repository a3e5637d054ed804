//! Running a `stream: true` background response: one streamed call to the provider whose events
//! are recorded as they arrive, under the job's lease, and whose final event becomes the job's
//! result. A re-run after a crash finds events already recorded and fails the response with a
//! stated reason rather than splice a second, different stream onto the first. A provider that
//! stops sending (before its head, or between events) fails the response with `upstream_timeout`
//! once one attempt timeout passes without an event (`crate::liveness`), and only recorded
//! events earn a lease renewal, so a hung stream is never kept alive.

use bytes::Bytes;
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ApiEndpoint;
use crate::deps::Deps;
use crate::error::StoreError;
use crate::jobs::run::{RunOutcome, Watched, finish, give_back, watch_cancel};
use crate::jobs::{Finish, Job, JobError, JobRef};
use crate::liveness::{Renewal, renewal, stall_limit};
use crate::ports::UpstreamError;
use crate::responses::events::{
    Arrival, MAX_RECORDED_EVENTS, RecordedEvent, SseSplitter, admit, arrival, final_response,
    interrupted_stream_error,
};

/// Runs a claimed streamed background response to its end.
pub(crate) async fn run_streamed_response(
    deps: &Deps,
    id: &JobRef,
    token: &str,
    job: &Job,
    body: Bytes,
    stop: &CancellationToken,
) -> Result<RunOutcome, StoreError> {
    let recorded = deps
        .jobs
        .events_after(id, None, MAX_RECORDED_EVENTS as usize)
        .await?;
    if let Some(last) = recorded.last() {
        tracing::warn!(
            last_sequence = last.sequence_number,
            "streamed response re-run after an interruption; failing it"
        );
        let error = interrupted_stream_error(last.sequence_number);
        finish(deps, id, token, Finish::Failed { error }).await?;
        return Ok(RunOutcome::Finished);
    }
    let recording = record_stream(deps, id, token, job, body);
    match watch_cancel(deps, id, token, stop, recording).await {
        Watched::Cancelled => {
            tracing::info!("streamed response cancelled; upstream call aborted");
            Ok(RunOutcome::Finished)
        }
        Watched::Stopped => give_back(deps, id, token).await,
        Watched::Done(Ok(Some(outcome))) => {
            finish(deps, id, token, outcome).await?;
            Ok(RunOutcome::Finished)
        }
        // The lease is gone: whoever took the job over decides its outcome.
        Watched::Done(Ok(None)) => Ok(RunOutcome::Finished),
        Watched::Done(Err(error)) => Err(error),
    }
}

/// Streams the provider's answer into the store; `None` when the lease was lost mid-way.
async fn record_stream(
    deps: &Deps,
    id: &JobRef,
    token: &str,
    job: &Job,
    body: Bytes,
) -> Result<Option<Finish>, StoreError> {
    let _yielded = deps.model_gate.interactive(&job.model);
    let timeout = deps.work_policy.upstream_timeout;
    let stall = stall_limit(timeout);
    // A relay has no deadline of its own (its body streams for as long as the provider sends):
    // the head, then each event, must come within the stall limit.
    let relayed = tokio::time::timeout(
        stall,
        deps.upstream
            .relay(ApiEndpoint::Responses, &job.model, body),
    )
    .await
    .unwrap_or(Err(UpstreamError::Timeout));
    let relay = match relayed {
        Ok(relay) => relay,
        Err(error) => return Ok(Some(failed(error.to_job_error()))),
    };
    if !(200..300).contains(&relay.status) {
        let error = UpstreamError::Status {
            status: relay.status,
            error: error_body(relay.body).await,
            retry_after: None,
            should_retry: None,
        };
        return Ok(Some(failed(error.to_job_error())));
    }
    let mut renewed = Instant::now();
    let mut progressed = Instant::now();
    let mut splitter = SseSplitter::default();
    let mut count = 0u64;
    let mut bytes = 0u64;
    let mut next_sequence = 0u64;
    let mut last = None;
    let mut body = relay.body;
    loop {
        let silent_for = stall.saturating_sub(progressed.elapsed());
        let Ok(next) = tokio::time::timeout(silent_for, body.next()).await else {
            return Ok(Some(stalled(stall)));
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(error) => {
                return Ok(Some(failed(JobError::new(
                    format!("The upstream stream broke off before its final event: {error}"),
                    "server_error",
                    Some("upstream_stream_broken"),
                ))));
            }
        };
        let mut page: Vec<RecordedEvent> = Vec::new();
        let mut over_cap = None;
        for text in splitter.push(&chunk) {
            let Arrival::Record(event) = arrival(&text, id.id.as_str(), next_sequence) else {
                continue;
            };
            if let Err(error) = admit(count, bytes, &event) {
                over_cap = Some(error);
                break;
            }
            count += 1;
            bytes += event.text.len() as u64;
            next_sequence = event.sequence_number + 1;
            if let Some(end) = final_response(&event) {
                last = Some(end);
            }
            page.push(event);
        }
        if !page.is_empty() {
            if !deps.jobs.append_events(id, token, &page).await? {
                return Ok(None);
            }
            // Only a recorded event is progress: keep-alive bytes or comments are not.
            progressed = Instant::now();
        }
        if let Some(error) = over_cap {
            return Ok(Some(failed(error)));
        }
        match renewal(progressed.elapsed(), renewed.elapsed(), timeout) {
            Renewal::Wait => {}
            Renewal::GiveUp => return Ok(Some(stalled(stall))),
            Renewal::Renew => {
                // A stream outlives one attempt's lease; extending it keeps the reconciler from
                // handing the job to a second worker while this one still records.
                let until = deps
                    .clock
                    .now()
                    .plus(timeout + deps.job_policy.lease_margin);
                if !deps
                    .jobs
                    .begin_attempt(id, token, job.attempts, until)
                    .await?
                {
                    return Ok(None);
                }
                renewed = Instant::now();
            }
        }
    }
    Ok(Some(match last {
        Some((kind, response)) if kind == "response.failed" => failed(upstream_failure(&response)),
        Some((_, response)) => Finish::completed(job, response.to_string(), deps.clock.now()),
        None => failed(JobError::new(
            "The upstream stream ended before its final event.",
            "server_error",
            Some("upstream_stream_broken"),
        )),
    }))
}

/// Error bodies past this are not read: the OpenAI error object is small.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The provider's OpenAI-shaped error from a refused stream's body, when it sent one.
async fn error_body(
    mut body: futures::stream::BoxStream<'static, Result<Bytes, UpstreamError>>,
) -> Option<JobError> {
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = body.next().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MAX_ERROR_BODY {
            return None;
        }
    }
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    serde_json::from_value(value.get("error")?.clone()).ok()
}

/// The outcome of a stream that went `stall` without an event: silent, or sending only bytes
/// that carry none.
fn stalled(stall: std::time::Duration) -> Finish {
    tracing::info!(
        ?stall,
        "upstream stream stalled: no event within the attempt timeout"
    );
    failed(UpstreamError::Timeout.to_job_error())
}

fn failed(error: JobError) -> Finish {
    Finish::Failed { error }
}

/// The error a provider's `response.failed` event states.
fn upstream_failure(response: &serde_json::Value) -> JobError {
    let error = &response["error"];
    JobError::new(
        error["message"]
            .as_str()
            .unwrap_or("The upstream response failed."),
        "server_error",
        Some(error["code"].as_str().unwrap_or("server_error")),
    )
}

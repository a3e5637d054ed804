//! The batch stages every trigger runs: planning (validate the input in one streamed pass and
//! write the chunk records), processing (claim a chunk, run its lines with bounded concurrency,
//! checkpoint parts under the chunk's fencing token), and the output-line format; finalizing is
//! `batch_finalize` (re-exported here as `try_finalize`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use rand::Rng;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batches::input::{
    BatchError, PlanOutcome, Planner, PlannerLimits, RequestLine, request_lines,
};
use crate::batches::{
    Batch, BatchErrors, BatchRef, BatchStatus, Chunk, ChunkClaim, LineTarget, Part, Usage,
    encode_part_line, encode_ranges, part_key,
};
use crate::clock::Timestamp;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::files::{UploadStream, file_blob_key};
use crate::jobs::service::Deps;
use crate::ports::{Lease, UpstreamError, WorkItem};
use crate::retry::delay_before_retry;
use crate::upstream::{client_error, error_body};

pub use crate::batches::finalize::try_finalize;

/// After a storage failure the message is left to reappear this soon.
const STORE_FAILURE_BACKOFF: Duration = Duration::from_secs(5);
/// The longest a line waits between attempts.
const MAX_LINE_BACKOFF: Duration = Duration::from_secs(60);

pub(crate) fn new_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

/// Handles one delivery of a batch stage.
pub async fn handle_batch_delivery(
    deps: &Deps,
    item: &WorkItem,
    receive_count: u32,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> QueueAction {
    let result = match item {
        WorkItem::PlanBatch(batch) if receive_count > deps.job_policy.max_receives => {
            dead_plan(deps, batch).await
        }
        WorkItem::PlanBatch(batch) => plan_batch(deps, batch).await,
        WorkItem::RunChunk { batch, chunk } if receive_count > deps.job_policy.max_receives => {
            dead_chunk(deps, batch, *chunk).await
        }
        WorkItem::RunChunk { batch, chunk } => run_chunk(deps, batch, *chunk, deadline, stop).await,
        WorkItem::FinalizeBatch(batch) => try_finalize(deps, batch).await,
        WorkItem::Job(_) => Ok(QueueAction::Ack),
    };
    result.unwrap_or_else(|error| {
        tracing::warn!(%error, "batch stage hit a storage failure; the message will reappear");
        QueueAction::RetryAfter(STORE_FAILURE_BACKOFF)
    })
}

pub(crate) async fn read_all(deps: &Deps, key: &str) -> Result<Vec<Bytes>, StoreError> {
    let mut stream = deps.blobs.get(key).await?;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    Ok(chunks)
}

/// Planning: streams the input once through the validator; fails the batch with every error
/// found (the first ones and a count) or writes its chunk records and queues them.
#[tracing::instrument(skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub async fn plan_batch(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await? else {
        return Ok(QueueAction::Ack);
    };
    match current.status {
        BatchStatus::Validating => {}
        BatchStatus::InProgress => {
            // Planned by an earlier delivery that died before queueing every chunk.
            queue_unfinished_chunks(deps, batch, None).await?;
            return Ok(QueueAction::Ack);
        }
        BatchStatus::Cancelling => return queue_finalize(deps, batch).await,
        _ => return Ok(QueueAction::Ack),
    }
    let now = deps.clock.now();
    let key = file_blob_key(&batch.tenant, &current.input_file_id);
    let mut stream = match deps.blobs.get(&key).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::info!(%error, "input file unreadable; failing the batch");
            let errors = BatchErrors {
                data: vec![BatchError {
                    code: "invalid_request".into(),
                    message: format!(
                        "Cannot find file {}, or it is not accessible.",
                        current.input_file_id
                    ),
                    param: Some("input_file_id".into()),
                    line: None,
                }],
                total: 1,
            };
            deps.batches.fail(batch, &errors, now).await?;
            return Ok(QueueAction::Ack);
        }
    };
    let routes = |model: &str| deps.upstream.routes(model);
    let limits = PlannerLimits {
        lines_per_chunk: deps.batch_policy.lines_per_chunk,
        ..PlannerLimits::default()
    };
    let mut planner = Planner::new(&current.endpoint, limits, &routes);
    while let Some(chunk) = stream.next().await {
        planner.feed(&chunk?);
    }
    match planner.finish() {
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            tracing::info!(total_errors, "batch input invalid");
            let errors = BatchErrors {
                data: errors,
                total: total_errors,
            };
            deps.batches.fail(batch, &errors, deps.clock.now()).await?;
        }
        PlanOutcome::Valid {
            total,
            chunks,
            models,
        } => {
            let model = (models.len() == 1).then(|| models[0].as_str());
            if deps
                .batches
                .plan(batch, &chunks, total, model, deps.clock.now())
                .await?
            {
                tracing::info!(total, chunks = chunks.len(), "batch planned");
                for plan in &chunks {
                    deps.queue
                        .enqueue(
                            &WorkItem::RunChunk {
                                batch: batch.clone(),
                                chunk: plan.index,
                            },
                            Duration::ZERO,
                        )
                        .await?;
                }
            }
        }
    }
    Ok(QueueAction::Ack)
}

/// Queues every chunk that is neither done nor held (and, with `idle_since`, untouched since).
pub async fn queue_unfinished_chunks(
    deps: &Deps,
    batch: &BatchRef,
    idle_since: Option<Timestamp>,
) -> Result<usize, StoreError> {
    let now = deps.clock.now();
    let mut queued = 0;
    for chunk in deps.batches.chunks(batch).await? {
        let idle = idle_since.is_none_or(|since| chunk.lease_expires_at.is_none_or(|t| t < since));
        if !chunk.done && !chunk.is_claimed(now) && idle {
            deps.queue
                .enqueue(
                    &WorkItem::RunChunk {
                        batch: batch.clone(),
                        chunk: chunk.plan.index,
                    },
                    Duration::ZERO,
                )
                .await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// A planning message that kept failing: the batch fails with a file-level error.
pub async fn dead_plan(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    let errors = BatchErrors {
        data: vec![BatchError {
            code: "processing_failed".into(),
            message: "The input file could not be validated after repeated attempts.".into(),
            param: None,
            line: None,
        }],
        total: 1,
    };
    if deps.batches.fail(batch, &errors, deps.clock.now()).await? {
        tracing::warn!(batch_id = %batch.id, "planning dead-lettered; batch failed");
    }
    Ok(QueueAction::Ack)
}

/// A chunk message that kept failing: its unfinished lines are written as failed (code
/// `processing_failed`) and counted, then finalization is tried.
pub async fn dead_chunk(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
) -> Result<QueueAction, StoreError> {
    let Claimed {
        token,
        lease,
        batch: current,
        chunk,
    } = match claim(deps, batch, index).await? {
        Ok(claimed) => claimed,
        Err(action) => return Ok(action),
    };
    let now = deps.clock.now();
    let lines = chunk_lines(deps, &current, &chunk).await?;
    let done = chunk.done_lines();
    let mut body = Vec::new();
    let mut failed = 0;
    let mut indexes = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if done.get(index).copied().unwrap_or(false) {
            continue;
        }
        let json = error_line(
            deps,
            &line.custom_id,
            "processing_failed",
            "This request could not be processed after repeated delivery attempts.",
        );
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        encode_part_line(LineTarget::Error, index, &json, &mut body);
        indexes.push(index);
        failed += 1;
    }
    if failed > 0 {
        let key = part_key(batch, index, &token, 0);
        store_part(deps, &key, body).await?;
        let part = Part {
            key,
            lines: failed,
            completed: 0,
            failed,
            usage: Usage::default(),
            done: encode_ranges(&indexes),
        };
        if !deps
            .batches
            .checkpoint(batch, index, &token, &part, lease.expires_at, now)
            .await?
        {
            return queue_finalize(deps, batch).await;
        }
    }
    finish_chunk(deps, batch, index, &token).await
}

/// A chunk claimed under a fresh token, with the batch and the chunk as the claim found them.
struct Claimed {
    token: String,
    lease: Lease,
    batch: Box<Batch>,
    chunk: Chunk,
}

async fn claim(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
) -> Result<Result<Claimed, QueueAction>, StoreError> {
    // Err: what to do with the message when the chunk is not ours (busy elsewhere, done, batch
    // closed).
    let now = deps.clock.now();
    let token = new_token();
    let lease = Lease {
        token: token.clone(),
        expires_at: now.plus(deps.batch_policy.lease),
    };
    Ok(
        match deps.batches.claim_chunk(batch, index, &lease, now).await? {
            ChunkClaim::Claimed { batch, chunk } => Ok(Claimed {
                token,
                lease,
                batch,
                chunk,
            }),
            ChunkClaim::Busy { lease_expires_at } => Err(QueueAction::RetryAfter(
                now.until(lease_expires_at) + Duration::from_secs(1),
            )),
            ChunkClaim::Done | ChunkClaim::Closed => Err(queue_finalize(deps, batch).await?),
        },
    )
}

/// Finalizing happens on its own queue (its own Lambda on AWS): every other stage only asks for
/// it. Duplicates are harmless: `try_finalize` is idempotent.
async fn queue_finalize(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    deps.queue
        .enqueue(&WorkItem::FinalizeBatch(batch.clone()), Duration::ZERO)
        .await?;
    Ok(QueueAction::Ack)
}

pub(crate) async fn store_part(deps: &Deps, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
    let stream: UploadStream<'static> =
        futures::stream::once(async move { Ok(Bytes::from(body)) }).boxed();
    deps.blobs
        .put_stream(key, stream)
        .await
        .map(|_| ())
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// The chunk's request lines, read by byte range from the input file.
pub(crate) async fn chunk_lines(
    deps: &Deps,
    batch: &Batch,
    chunk: &Chunk,
) -> Result<Vec<RequestLine>, StoreError> {
    let key = file_blob_key(&batch.tenant, &batch.input_file_id);
    let bytes = deps
        .blobs
        .get_range(&key, chunk.plan.start, chunk.plan.end)
        .await?;
    request_lines(&bytes, chunk.plan.start == 0).map_err(|line| {
        StoreError::Corrupt(format!(
            "request line {line} of chunk {} no longer parses",
            chunk.plan.index
        ))
    })
}

async fn finish_chunk(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
    token: &str,
) -> Result<QueueAction, StoreError> {
    deps.batches.complete_chunk(batch, index, token).await?;
    // Whoever sees the last chunk done queues finalization (duplicates are harmless).
    if let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await?
        && current.chunks_done >= current.chunks
    {
        deps.queue
            .enqueue(&WorkItem::FinalizeBatch(batch.clone()), Duration::ZERO)
            .await?;
    }
    Ok(QueueAction::Ack)
}

#[derive(Serialize)]
struct OutputLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<ResponsePart<'a>>,
    error: Option<LineError<'a>>,
}

#[derive(Serialize)]
struct ResponsePart<'a> {
    status_code: u16,
    request_id: String,
    body: &'a RawValue,
}

#[derive(Serialize)]
struct LineError<'a> {
    code: &'a str,
    message: &'a str,
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn error_line(deps: &Deps, custom_id: &str, code: &str, message: &str) -> String {
    serde_json::to_string(&OutputLine {
        id: deps.ids.batch_request_id(deps.clock.now()),
        custom_id,
        response: None,
        error: Some(LineError { code, message }),
    })
    .unwrap_or_default()
}

fn response_line(deps: &Deps, custom_id: &str, status: u16, body: &RawValue) -> String {
    serde_json::to_string(&OutputLine {
        id: deps.ids.batch_request_id(deps.clock.now()),
        custom_id,
        response: Some(ResponsePart {
            status_code: status,
            request_id: request_id(),
            body,
        }),
        error: None,
    })
    .unwrap_or_default()
}

/// One line's result, ready for its part.
struct LineResult {
    target: LineTarget,
    json: String,
    usage: Usage,
}

/// Runs one line until it succeeds, fails for good, or the batch's window ends; retryable
/// failures back off (the breaker pauses the model on a 429 with `retry-after`).
async fn run_line(deps: &Deps, batch: &Batch, line: &RequestLine) -> LineResult {
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let permit = deps.model_gate.enter(&line.model).await;
        let timeout = deps.job_policy.upstream_timeout;
        let result = deps
            .upstream
            .complete(&line.model, line.body.clone(), timeout)
            .await;
        drop(permit);
        let error = match result {
            Ok(completion) => {
                let usage = Usage::of_completion(&completion.body);
                let json = match serde_json::from_str::<&RawValue>(&completion.body) {
                    Ok(body) => response_line(deps, &line.custom_id, 200, body),
                    Err(e) => failed_line(
                        deps,
                        &line.custom_id,
                        &UpstreamError::InvalidResponse(e.to_string()),
                    ),
                };
                return LineResult {
                    target: LineTarget::Output,
                    json,
                    usage,
                };
            }
            Err(error) => error,
        };
        let wait = delay_before_retry(attempt, error.retry_after()).min(MAX_LINE_BACKOFF);
        if let (UpstreamError::Status { status: 429, .. }, Some(after)) =
            (&error, error.retry_after())
        {
            deps.model_gate.pause(&line.model, after);
        }
        let fits = deps.clock.now().plus(wait) < batch.expires_at;
        if error.is_retryable() && fits {
            tokio::time::sleep(wait).await;
            continue;
        }
        return LineResult {
            target: LineTarget::Error,
            json: failed_line(deps, &line.custom_id, &error),
            usage: Usage::default(),
        };
    }
}

/// An upstream HTTP failure keeps its status, with the error body of the one upstream table
/// ([`crate::upstream`]); other failures have no response, only that table's code and message.
fn failed_line(deps: &Deps, custom_id: &str, error: &UpstreamError) -> String {
    let shown = client_error(error).error;
    let code = shown.code.as_deref().unwrap_or("upstream_error");
    match error {
        UpstreamError::Status { status, .. } => {
            let body = error_body(&shown.message, &shown.kind, None, shown.code.as_deref());
            match serde_json::value::to_raw_value(&body) {
                Ok(raw) => response_line(deps, custom_id, *status, &raw),
                Err(_) => error_line(deps, custom_id, code, &shown.message),
            }
        }
        _ => error_line(deps, custom_id, code, &shown.message),
    }
}

/// Processing: claim the chunk, run its lines from the cursor with bounded concurrency, commit
/// parts every `checkpoint_lines` lines or `checkpoint_every`, then mark it done.
#[tracing::instrument(skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id, chunk = index))]
pub async fn run_chunk(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> Result<QueueAction, StoreError> {
    let claimed = match claim(deps, batch, index).await? {
        Ok(claimed) => claimed,
        Err(action) => return Ok(action),
    };
    let token = claimed.token.clone();
    let outcome = process(deps, batch, index, claimed, deadline, stop).await;
    if outcome.is_err() {
        // A storage failure mid-chunk: let the claim go now, so a cancel or expiry need not
        // wait out the lease and the message's next delivery resumes from the cursor at once.
        if let Err(error) = deps.batches.release_chunk(batch, index, &token).await {
            tracing::warn!(%error, "could not release a chunk after a failure; its lease will lapse");
        }
    }
    outcome
}

/// Runs a claimed chunk's remaining lines, committing as it goes, then marks it done.
async fn process(
    deps: &Deps,
    batch: &BatchRef,
    index: u32,
    Claimed {
        token,
        batch: current,
        chunk,
        ..
    }: Claimed,
    deadline: Option<Instant>,
    stop: &CancellationToken,
) -> Result<QueueAction, StoreError> {
    let policy = &deps.batch_policy;
    let lines = chunk_lines(deps, &current, &chunk).await?;
    let done = chunk.done_lines();
    // Lines not yet committed, whatever order earlier claims finished them in.
    let todo: Vec<(u32, RequestLine)> = lines
        .into_iter()
        .enumerate()
        .filter(|(line, _)| !done.get(*line).copied().unwrap_or(false))
        .map(|(line, request)| (u32::try_from(line).unwrap_or(u32::MAX), request))
        .collect();
    let shared = Arc::new(current);
    // Unordered: a slow line holds back neither the others nor their commit; the finalizer
    // puts lines back in input order.
    let mut results = futures::stream::iter(todo)
        .map(|(line, request)| {
            let (deps, batch) = (deps.clone(), Arc::clone(&shared));
            async move { (line, run_line(&deps, &batch, &request).await) }
        })
        .buffer_unordered(policy.line_concurrency.max(1));
    let mut run = ChunkRun {
        deps,
        batch,
        index,
        token,
        seq: u32::try_from(chunk.parts.len()).unwrap_or(u32::MAX),
        pending: PendingPart::default(),
    };
    let mut last_commit = Instant::now();
    // Finished lines are committed at least every `checkpoint_every`, even while the rest are
    // slow (a straggler must not hold them back past a cancel or the window's end), and the
    // lease is renewed at least every third of its length.
    let mut tick = tokio::time::interval(policy.checkpoint_every.min(policy.lease / 3));
    tick.tick().await;
    let stop_at = deadline.map(|d| d.checked_sub(Duration::from_secs(10)).unwrap_or(d));
    loop {
        let next = tokio::select! {
            next = results.next() => next,
            _ = stop.cancelled() => return run.give_up().await,
            _ = sleep_until_opt(stop_at) => return run.give_up().await,
            _ = tick.tick() => {
                // With nothing pending this only renews the lease.
                if !run.commit().await? {
                    tracing::info!("chunk claim ended (batch closed or taken over); stopping");
                    return run.stop_for_finalize().await;
                }
                last_commit = Instant::now();
                continue;
            }
        };
        let Some((line, result)) = next else { break };
        run.pending.push(line, result);
        let due = run.pending.lines >= policy.checkpoint_lines as u32
            || last_commit.elapsed() >= policy.checkpoint_every;
        if due {
            if !run.commit().await? {
                return run.stop_for_finalize().await;
            }
            last_commit = Instant::now();
        }
    }
    if !run.commit().await? {
        return run.stop_for_finalize().await;
    }
    finish_chunk(deps, batch, index, &run.token).await
}

/// A chunk this processor holds while it runs: which chunk, the claim's token, the next part's
/// sequence number and the finished lines not yet committed.
struct ChunkRun<'a> {
    deps: &'a Deps,
    batch: &'a BatchRef,
    index: u32,
    token: String,
    seq: u32,
    pending: PendingPart,
}

impl ChunkRun<'_> {
    /// Stores the pending lines under a key unique to this claim and commits them with one
    /// conditional write (with nothing pending, only renews the lease); false when the claim no
    /// longer holds or the batch takes no more results.
    async fn commit(&mut self) -> Result<bool, StoreError> {
        let (deps, batch, index, token) = (self.deps, self.batch, self.index, &self.token);
        let now = deps.clock.now();
        let until = now.plus(deps.batch_policy.lease);
        if self.pending.lines == 0 {
            return deps.batches.renew_chunk(batch, index, token, until).await;
        }
        let part = std::mem::take(&mut self.pending);
        let key = part_key(batch, index, token, self.seq);
        self.seq += 1;
        store_part(deps, &key, part.body).await?;
        let record = Part {
            key,
            lines: part.lines,
            completed: part.completed,
            failed: part.failed,
            usage: part.usage,
            done: encode_ranges(&part.indexes),
        };
        let kept = deps
            .batches
            .checkpoint(batch, index, token, &record, until, now)
            .await?;
        if !kept {
            // Discarded by its condition (cancelled, expired, or another claim): the stored part
            // is never referenced, and its lines are written by whoever owns them now.
            tracing::info!("checkpoint discarded: the claim no longer holds");
            if let Err(error) = deps.blobs.delete(&record.key).await {
                tracing::debug!(%error, "could not delete an unreferenced part");
            }
        }
        Ok(kept)
    }

    /// The batch stopped taking results (cancel, expiry) or the claim was taken over: let the
    /// chunk go at once, so finalization need not wait out the lease, and ask for finalization.
    async fn stop_for_finalize(&self) -> Result<QueueAction, StoreError> {
        self.deps
            .batches
            .release_chunk(self.batch, self.index, &self.token)
            .await?;
        queue_finalize(self.deps, self.batch).await
    }

    /// Near the deadline or shutting down: keep what finished, let the chunk go, and let the
    /// message reappear at once for whoever resumes from the cursor.
    async fn give_up(&mut self) -> Result<QueueAction, StoreError> {
        if self.commit().await? {
            self.deps
                .batches
                .release_chunk(self.batch, self.index, &self.token)
                .await?;
        }
        tracing::info!("chunk handed back with its progress saved");
        Ok(QueueAction::RetryAfter(Duration::ZERO))
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[derive(Default)]
struct PendingPart {
    body: Vec<u8>,
    lines: u32,
    completed: u32,
    failed: u32,
    usage: Usage,
    indexes: Vec<u32>,
}

impl PendingPart {
    fn push(&mut self, index: u32, result: LineResult) {
        encode_part_line(result.target, index, &result.json, &mut self.body);
        self.indexes.push(index);
        self.lines += 1;
        match result.target {
            LineTarget::Output => self.completed += 1,
            LineTarget::Error => self.failed += 1,
        }
        self.usage.add(&result.usage);
    }
}

//! Processing a batch's chunks: claim a chunk under a fencing token, run its remaining lines
//! with bounded concurrency (`buffer_unordered`, so a slow line holds back no other), commit
//! finished lines as parts named by their done ranges every `checkpoint_lines` lines or
//! `checkpoint_every`, renew the claim, and mark the chunk done; a chunk whose message was
//! dead-lettered has its unfinished lines written as failed. A native provider's lines are not
//! run here: their group's look commits them ([`crate::batches::native::poll`]), and a chunk
//! still waiting on some is let go instead of marked done.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::batches::input::{RequestLine, request_lines};
use crate::batches::modes::{BatchMode, FlexStep, Tier, after_flex_failure, flex_body};
use crate::batches::native::groups::native_provider;
use crate::batches::output::{error_line, response_line};
use crate::batches::{
    Batch, BatchRef, Chunk, ChunkClaim, ChunkWrite, ClaimPurpose, LineTarget, Part, Usage,
    encode_part_line, encode_ranges, part_key,
};
use crate::deps::Deps;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::files::{UploadStream, file_blob_key};
use crate::ids::new_lease_token;
use crate::ports::{Lease, UpstreamError, WorkItem};
use crate::pricing::{CompletionHead, LineRun, Tier as PriceTier};
use crate::retry::{RateLimits, delay_before_retry, tries_again};
use crate::telemetry::{self, JobEvent, WorkKind};
use crate::upstream::{client_error, error_body};

/// The longest a line waits between attempts.
const MAX_LINE_BACKOFF: Duration = Duration::from_secs(60);

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
    let mut models: Vec<(&str, u64)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if done.get(index).copied().unwrap_or(false) {
            continue;
        }
        match models.iter_mut().find(|(model, _)| *model == line.model) {
            Some((_, n)) => *n += 1,
            None => models.push((&line.model, 1)),
        }
        let json = error_line(
            deps,
            &line.custom_id,
            "processing_failed",
            "This request could not be processed after repeated delivery attempts.",
        );
        let index = u32::try_from(index).unwrap_or(u32::MAX);
        encode_part_line(LineTarget::Error, index, None, &json, &mut body);
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
        if deps
            .batches
            .checkpoint(batch, index, &token, &part, lease.expires_at, now)
            .await?
            == ChunkWrite::Refused
        {
            return queue_finalize(deps, batch).await;
        }
        // Counted once the checkpoint holds them: a later delivery finds these lines done.
        telemetry::count_batch_lines(0, u64::from(failed));
        for (model, n) in models {
            telemetry::count_jobs(JobEvent::Failed, WorkKind::BatchLine, model, n);
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
    let token = new_lease_token();
    let lease = Lease {
        token: token.clone(),
        expires_at: now.plus(deps.batch_policy.lease),
    };
    Ok(
        match deps
            .batches
            .claim_chunk(batch, index, &lease, ClaimPurpose::Run, now)
            .await?
        {
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
pub(crate) async fn queue_finalize(
    deps: &Deps,
    batch: &BatchRef,
) -> Result<QueueAction, StoreError> {
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

pub(crate) async fn finish_chunk(
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

/// One line's result, ready for its part.
struct LineResult {
    target: LineTarget,
    json: String,
    usage: Usage,
    /// The tier a successful line bills at ([`PriceTier::of_batch_line`]), recorded with it.
    tier: Option<PriceTier>,
}

/// Runs one line until it succeeds, fails for good (a permanent error, or `max_attempts`
/// attempts of any other but a rate limit), or the batch's window ends; retryable failures back
/// off (the breaker pauses the model on a 429 with `retry-after`). A line of a flex provider is
/// sent at the flex tier, and a refusal of it follows the flex policy (`modes::after_flex_failure`).
async fn run_line(deps: &Deps, batch: &Batch, line: &RequestLine) -> LineResult {
    let route = deps.upstream.batch_route(&line.model);
    let fallback = route.as_ref().map(|r| r.flex_fallback).unwrap_or_default();
    let mut tier = match route.map(|r| r.mode) {
        Some(BatchMode::Flex) => Tier::Flex,
        _ => Tier::Standard,
    };
    let kind = WorkKind::BatchLine;
    let started = Instant::now();
    telemetry::count_jobs(JobEvent::Started, kind, &line.model, 1);
    let due = batch.in_progress_at.unwrap_or(batch.created_at);
    telemetry::record_queue_wait(kind, &line.model, due.until(deps.clock.now()));
    let ended = |event: JobEvent| {
        telemetry::count_jobs(event, kind, &line.model, 1);
        telemetry::record_run_time(kind, &line.model, started.elapsed());
    };
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        if attempt > 1 {
            telemetry::count_jobs(JobEvent::Retried, kind, &line.model, 1);
        }
        let permit = deps.model_gate.enter(&line.model).await;
        let timeout = deps.work_policy.upstream_timeout;
        let body = match tier {
            Tier::Flex => flex_body(&line.body),
            Tier::Standard => line.body.clone(),
        };
        let result = deps
            .upstream
            .complete(batch.endpoint, &line.model, body, timeout)
            .await;
        drop(permit);
        let error = match result {
            Ok(completion) => {
                // Usage and tier from one parse of the body.
                let head = CompletionHead::parse(&completion.body).unwrap_or_default();
                let usage = head.usage;
                let run = LineRun::Gateway {
                    flex: tier == Tier::Flex,
                };
                let billed = PriceTier::of_batch_line(run, head.service_tier.as_deref());
                let json = match serde_json::from_str::<&RawValue>(&completion.body) {
                    Ok(body) => response_line(deps, &line.custom_id, 200, body),
                    Err(e) => failed_line(
                        deps,
                        &line.custom_id,
                        &UpstreamError::InvalidResponse(e.to_string()),
                    ),
                };
                ended(JobEvent::Completed);
                return LineResult {
                    target: LineTarget::Output,
                    json,
                    usage,
                    tier: Some(billed),
                };
            }
            Err(error) => error,
        };
        let flex = after_flex_failure(&error, tier, fallback);
        if flex == FlexStep::SendStandard {
            tracing::debug!("flex tier unavailable; sending at the standard tier");
            tier = Tier::Standard;
            attempt -= 1;
            continue;
        }
        let wait = delay_before_retry(attempt, error.retry_after()).min(MAX_LINE_BACKOFF);
        if let (UpstreamError::Status { status: 429, .. }, Some(after)) =
            (&error, error.retry_after())
        {
            deps.model_gate.pause(&line.model, after);
        }
        let fits = deps.clock.now().plus(wait) < batch.expires_at;
        let again = flex == FlexStep::RetryLater
            || tries_again(
                &error,
                attempt,
                deps.work_policy.max_attempts,
                RateLimits::RideOut,
            );
        if again && fits {
            tokio::time::sleep(wait).await;
            continue;
        }
        ended(JobEvent::Failed);
        return LineResult {
            target: LineTarget::Error,
            json: failed_line(deps, &line.custom_id, &error),
            usage: Usage::default(),
            tier: None,
        };
    }
}

/// An upstream HTTP failure keeps its status, with the error body of the one upstream table
/// ([`crate::upstream`]); other failures have no response, only that table's code and message.
pub(crate) fn failed_line(deps: &Deps, custom_id: &str, error: &UpstreamError) -> String {
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
    // A native group's lines are its to commit; the chunk waits for them. Which lines those are
    // planning recorded; a chunk planned before that follows the configuration.
    let native_lines: Vec<bool> = chunk.native_lines().unwrap_or_else(|| {
        lines
            .iter()
            .map(|line| native_provider(deps, &line.model).is_some())
            .collect()
    });
    let is_native = |line: u32| native_lines.get(line as usize).copied().unwrap_or(false);
    let native_pending = (0..lines.len())
        .filter_map(|line| u32::try_from(line).ok())
        .any(|line| is_native(line) && !done.get(line as usize).copied().unwrap_or(false));
    // Lines not yet committed, whatever order earlier claims finished them in.
    let todo: Vec<(u32, RequestLine)> = lines
        .iter()
        .enumerate()
        .map(|(line, request)| (u32::try_from(line).unwrap_or(u32::MAX), request))
        .filter(|(line, _)| {
            !done.get(*line as usize).copied().unwrap_or(false) && !is_native(*line)
        })
        .map(|(line, request)| (line, request.clone()))
        .collect();
    let shared = Arc::new(current);
    let start_line = |(line, request): (u32, RequestLine)| {
        let (deps, batch) = (deps.clone(), Arc::clone(&shared));
        async move { (line, run_line(&deps, &batch, &request).await) }
    };
    let mut todo = todo.into_iter();
    // Unordered: a slow line holds back neither the others nor their commit; the finalizer
    // puts lines back in input order.
    let mut results = futures::stream::FuturesUnordered::new();
    // A line holds its slot from its call until its result is committed, so at most
    // `line_concurrency` lines are ever started and not yet saved: all a kill can make the next
    // claim run again.
    let slots = u32::try_from(policy.line_concurrency.max(1)).unwrap_or(u32::MAX);
    let mut run = ChunkRun {
        deps,
        batch,
        index,
        token,
        seq: u32::try_from(chunk.parts.len()).unwrap_or(u32::MAX),
        pending: PendingPart::default(),
    };
    // Two clocks: finished lines are committed within `checkpoint_every` of the first of them
    // arriving (a kill then repeats little more than the calls in flight, and a straggler holds
    // back neither a cancel nor the window's end); the lease is renewed only when no commit
    // renewed it for a third of its length, so a slow chunk with nothing finished costs no
    // writes beyond that.
    let renew_every = policy.lease / 3;
    let mut commit_by: Option<Instant> = None;
    let mut renew_by = Instant::now() + renew_every;
    let stop_at = deadline.map(|d| d.checked_sub(Duration::from_secs(10)).unwrap_or(d));
    loop {
        while results.len() as u32 + run.pending.lines < slots {
            let Some(next) = todo.next() else { break };
            results.push(start_line(next));
        }
        if results.is_empty() {
            // Every line has run (a full set of slots waiting on a commit was committed at once).
            break;
        }
        let write = tokio::select! {
            Some((line, result)) = results.next(), if !results.is_empty() => {
                run.pending.push(line, result);
                // Half the slots waiting on a commit cost more throughput than one write.
                let due = run.pending.lines >= policy.checkpoint_lines as u32
                    || run.pending.lines * 2 >= slots;
                if !due {
                    commit_by.get_or_insert_with(|| Instant::now() + policy.checkpoint_every);
                    continue;
                }
                run.commit().await?
            }
            _ = stop.cancelled() => return run.give_up().await,
            _ = sleep_until_opt(stop_at) => return run.give_up().await,
            _ = sleep_until_opt(commit_by) => run.commit().await?,
            // Nothing pending (a commit would have renewed it): only renews the lease.
            _ = tokio::time::sleep_until(renew_by) => run.commit().await?,
        };
        commit_by = None;
        renew_by = Instant::now() + renew_every;
        match write {
            ChunkWrite::Running => {}
            ChunkWrite::Stopping => return run.stop_for_cancel(results).await,
            ChunkWrite::Refused => {
                tracing::info!("chunk claim ended (batch closed or taken over); stopping");
                return run.stop_for_finalize().await;
            }
        }
    }
    drop(results);
    if native_pending {
        // Every gateway line is in; the native ones come with their group's look, which
        // completes the chunk.
        return match run.commit().await? {
            ChunkWrite::Running => {
                deps.batches.release_chunk(batch, index, &run.token).await?;
                Ok(QueueAction::Ack)
            }
            ChunkWrite::Stopping | ChunkWrite::Refused => run.stop_for_finalize().await,
        };
    }
    match run.commit().await? {
        ChunkWrite::Running => finish_chunk(deps, batch, index, &run.token).await,
        // Every line has run: its results are in, and the cancel's finalizer takes it from here.
        ChunkWrite::Stopping | ChunkWrite::Refused => run.stop_for_finalize().await,
    }
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
    /// conditional write (with nothing pending, only renews the lease); the answer says whether
    /// to carry on, to stop for a cancel (the lines were kept), or that nothing was kept.
    async fn commit(&mut self) -> Result<ChunkWrite, StoreError> {
        let (deps, batch, index, token) = (self.deps, self.batch, self.index, &self.token);
        let now = deps.clock.now();
        let until = now.plus(deps.batch_policy.lease);
        if self.pending.lines == 0 {
            // Counted by bench/checkpoint.sh (a store write per event).
            tracing::debug!("chunk lease renewed");
            return deps.batches.renew_chunk(batch, index, token, until).await;
        }
        let part = std::mem::take(&mut self.pending);
        // Counted by bench/checkpoint.sh (a blob put and a store write per event).
        tracing::debug!(lines = part.lines, "chunk part committed");
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
        let answer = deps
            .batches
            .checkpoint(batch, index, token, &record, until, now)
            .await?;
        if answer != ChunkWrite::Refused {
            telemetry::count_batch_lines(u64::from(record.completed), u64::from(record.failed));
        }
        if answer == ChunkWrite::Refused {
            // Discarded by its condition (finalizing, expired, or another claim): the stored part
            // is never referenced, and its lines are written by whoever owns them now.
            tracing::info!("checkpoint discarded: the claim no longer holds");
            if let Err(error) = deps.blobs.delete(&record.key).await {
                tracing::debug!(%error, "could not delete an unreferenced part");
            }
        }
        Ok(answer)
    }

    /// The batch is being cancelled: keep the lines that finished by now (also those finished
    /// but not yet collected), abort the calls still in flight by dropping them, start nothing
    /// more, and let the chunk go so the cancel's finalizer reads every committed line.
    async fn stop_for_cancel<S>(&mut self, mut results: S) -> Result<QueueAction, StoreError>
    where
        S: futures::Stream<Item = (u32, LineResult)> + Unpin,
    {
        while let Some(Some((line, result))) = results.next().now_or_never() {
            self.pending.push(line, result);
        }
        drop(results);
        if self.pending.lines > 0 {
            self.commit().await?;
        }
        tracing::info!("batch cancelling: finished lines kept, calls in flight aborted");
        self.stop_for_finalize().await
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
        if self.commit().await? != ChunkWrite::Refused {
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
        encode_part_line(
            result.target,
            index,
            result.tier,
            &result.json,
            &mut self.body,
        );
        self.indexes.push(index);
        self.lines += 1;
        match result.target {
            LineTarget::Output => self.completed += 1,
            LineTarget::Error => self.failed += 1,
        }
        self.usage.add(&result.usage);
    }
}

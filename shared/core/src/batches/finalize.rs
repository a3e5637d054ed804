//! Finalizing a batch (`try_finalize`): one winner claims `finalizing` under a lease and
//! assembles the output and error files in input order from the committed parts alone, then
//! ends the batch; a finalizer that takes over an expired lease writes the very same files.
//! Assembly streams: a few chunks are read ahead, a chunk's lines are held only until they are
//! handed to the blob store, only the parts that may hold a file's lines are read for it, and
//! the lease is renewed as assembly goes, so a batch of any size is assembled once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{StreamExt, TryStreamExt};

use crate::batches::decisions;
use crate::batches::output::{billed_line, error_line};
use crate::batches::process::chunk_lines;
use crate::batches::{
    Batch, BatchRef, Chunk, FinalizeLease, LineTarget, RequestCounts, decode_part_line,
};
use crate::deps::Deps;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::files::{FilePurpose, FileRecord, file_blob_key};
use crate::ids::new_lease_token;
use crate::ports::BatchResult;
use crate::pricing::{Tier, UsageByModel};
use crate::usage::counters::UsageCount;

/// Chunks whose parts are read while an earlier one is handed to the blob store; memory holds
/// at most this many chunks' lines at once.
const CHUNKS_READ_AHEAD: usize = 4;
/// Parts of one chunk read at once (a slow chunk commits many small parts).
const PART_READS_IN_FLIGHT: usize = 4;

/// Idempotent: called from every chunk outcome, from cancel, from expiry and from the
/// reconciler. When the batch is ready, claims `finalizing` with a lease; only the winner
/// assembles the files.
#[tracing::instrument(skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub async fn try_finalize(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await? else {
        return Ok(QueueAction::Ack);
    };
    let chunks = decisions::planned_chunks(&current, deps.batches.chunks(batch).await?);
    let now = deps.clock.now();
    let native =
        crate::batches::native::groups::live_while_cancelling(deps, &current, &chunks).await;
    let outcome = match decisions::finalize_outcome(&current, &chunks, native, now) {
        Ok(outcome) => outcome,
        Err(Some(recheck)) => return Ok(QueueAction::RetryAfter(recheck)),
        Err(None) => return Ok(QueueAction::Ack),
    };
    if outcome != crate::batches::BatchOutcome::Completed
        && decisions::may_have_native_lines(&chunks)
    {
        // A cancel or expiry reaches the provider batches now, not at their next look.
        crate::batches::native::groups::wake_groups(deps, batch).await?;
    }
    let lease = FinalizeLease {
        token: new_lease_token(),
        expires_at: now.plus(deps.batch_policy.lease),
        outcome,
        output_file_id: deps.ids.file_id(now),
        error_file_id: deps.ids.file_id(now),
    };
    let Some(claimed) = deps.batches.claim_finalize(batch, &lease, now).await? else {
        return Ok(QueueAction::Ack);
    };
    let Some(held) = claimed.finalize.clone() else {
        return Ok(QueueAction::Ack);
    };
    let hold = Arc::new(Hold::default());
    // Renewals start at the claim: reading a large batch's chunk records can take a while too.
    let assembled = tokio::select! {
        assembled = async {
            // The chunk records as of the claim: no checkpoint lands after it.
            let chunks = decisions::planned_chunks(&claimed, deps.batches.chunks(batch).await?);
            assemble(deps, &claimed, &held, &Arc::new(chunks), &hold).await
        } => assembled?,
        never = renew_while_assembling(deps, batch, &held.token, &hold) => match never {},
    };
    let Some(result) = assembled else {
        tracing::info!("another finalizer took the batch over; this one stops");
        return Ok(QueueAction::Ack);
    };
    if deps
        .batches
        .finish(batch, &held.token, &result, deps.clock.now())
        .await?
    {
        tracing::info!(
            outcome = held.outcome.as_str(),
            completed = result.counts.completed,
            failed = result.counts.failed,
            "batch finalized"
        );
        release_input(deps, &claimed).await?;
    }
    Ok(QueueAction::Ack)
}

/// An input file deleted while this batch read it keeps its bytes until no unfinished batch
/// needs them; this batch has just ended.
async fn release_input(deps: &Deps, batch: &Batch) -> Result<(), StoreError> {
    let now = deps.clock.now();
    let file = &batch.input_file_id;
    if deps.files.get(&batch.tenant, file, now).await?.is_none()
        && !crate::files::service::input_in_use(deps, &batch.tenant, file).await?
    {
        deps.blobs
            .delete(&file_blob_key(&batch.tenant, file))
            .await?;
    }
    Ok(())
}

/// Whether the finalizer still holds its lease: a renewal refused (another finalizer took over,
/// or the batch ended) stops the assembly at its next chunk. Without renewals, a finalize longer
/// than one lease is taken over mid-way, again and again, each taker starting from nothing
/// beside the ones still running.
#[derive(Default)]
struct Hold {
    lost: AtomicBool,
}

impl Hold {
    fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.lost() {
            return Err(StoreError::Unavailable(
                "the finalize lease was taken over".into(),
            ));
        }
        Ok(())
    }
}

/// Renews the finalizer's lease every third of it for as long as the assembly runs (it is
/// dropped with it); a refusal marks the hold lost. A renewal that fails is tried again at the
/// next turn: the lease still has two thirds left.
async fn renew_while_assembling(
    deps: &Deps,
    batch: &BatchRef,
    token: &str,
    hold: &Hold,
) -> std::convert::Infallible {
    let every = (deps.batch_policy.lease / 3).max(Duration::from_millis(50));
    loop {
        tokio::time::sleep(every).await;
        if hold.lost() {
            continue;
        }
        let until = deps.clock.now().plus(deps.batch_policy.lease);
        match deps.batches.renew_finalize(batch, token, until).await {
            Ok(true) => tracing::debug!("finalize lease renewed"),
            Ok(false) => hold.lost.store(true, Ordering::SeqCst),
            Err(error) => {
                tracing::warn!(%error, "could not renew the finalize lease; trying again")
            }
        }
    }
}

/// Writes the output and error files from the committed parts in input order, plus an error
/// line for every line no part holds (cancel, expiry), and registers them; `None` when another
/// finalizer took over meanwhile.
async fn assemble(
    deps: &Deps,
    batch: &Batch,
    lease: &FinalizeLease,
    chunks: &Arc<Vec<Chunk>>,
    hold: &Arc<Hold>,
) -> Result<Option<BatchResult>, StoreError> {
    // Counts and usage come from the files as written, one line per request line: whatever
    // parts a crash or a redelivery left, each line is counted and billed exactly once.
    let Some(output) = write_file(deps, batch, lease, chunks, LineTarget::Output, hold).await?
    else {
        return Ok(None);
    };
    let Some(errors) = write_file(deps, batch, lease, chunks, LineTarget::Error, hold).await?
    else {
        return Ok(None);
    };
    let counts = RequestCounts {
        total: batch.counts.total,
        completed: output.lines,
        failed: errors.lines,
    };
    let (output_bytes, error_bytes) = (output.bytes, errors.bytes);
    let usage_by_model = output.billed;
    let now = deps.clock.now();
    let expires_at = Some(
        now.plus(
            batch
                .output_expires_after
                .unwrap_or(crate::files::BATCH_INPUT_TTL),
        ),
    );
    let register = |id: &crate::FileId, bytes: u64, name: &str| FileRecord {
        id: id.clone(),
        tenant: batch.tenant.clone(),
        purpose: FilePurpose::BatchOutput,
        filename: format!("{}_{name}.jsonl", batch.id),
        bytes,
        created_at: now,
        expires_at,
    };
    let output_file_id = if output_bytes > 0 {
        create_file_once(
            deps,
            &register(&lease.output_file_id, output_bytes, "output"),
        )
        .await?;
        Some(lease.output_file_id.clone())
    } else {
        None
    };
    let error_file_id = if error_bytes > 0 {
        create_file_once(deps, &register(&lease.error_file_id, error_bytes, "error")).await?;
        Some(lease.error_file_id.clone())
    } else {
        None
    };
    Ok(Some(BatchResult {
        outcome: lease.outcome,
        counts,
        usage: usage_by_model.total(),
        // Dated when the files are written; the end's write follows at once.
        counted: UsageCount::of_finished_batch(&usage_by_model, now),
        usage_by_model,
        output_file_id,
        error_file_id,
    }))
}

/// A finalizer that took over may find the record written by its predecessor.
async fn create_file_once(deps: &Deps, record: &FileRecord) -> Result<(), StoreError> {
    if deps
        .files
        .get(&record.tenant, &record.id, record.created_at)
        .await?
        .is_some()
    {
        return Ok(());
    }
    deps.files.create(record).await
}

/// What writing one of the two files found.
#[derive(Default)]
struct Written {
    bytes: u64,
    /// Lines in the file, never-run lines included.
    lines: u64,
    /// Usage of the output file's successful lines, per model and tier.
    billed: UsageByModel,
}

/// Streams one of the two files into the blob store, counting its lines and (output file)
/// summing their usage; `None` when the lease was lost on the way.
async fn write_file(
    deps: &Deps,
    batch: &Batch,
    lease: &FinalizeLease,
    chunks: &Arc<Vec<Chunk>>,
    target: LineTarget,
    hold: &Arc<Hold>,
) -> Result<Option<Written>, StoreError> {
    let file_id = match target {
        LineTarget::Output => &lease.output_file_id,
        LineTarget::Error => &lease.error_file_id,
    };
    let key = file_blob_key(&batch.tenant, file_id);
    let unrun_error = match target {
        LineTarget::Error => lease.outcome.unrun_line_error(),
        LineTarget::Output => None,
    };
    let holds_lines = |chunk: &Chunk| {
        chunk.parts.iter().any(|part| part.may_hold(target))
            || (unrun_error.is_some() && chunk.cursor < chunk.plan.lines)
    };
    if !chunks.iter().any(holds_lines) {
        // Nothing to write (the error file of a batch without failures): no read, no object.
        return Ok(Some(Written::default()));
    }
    // Chunks in order, a few read ahead: memory holds a few chunks' lines, never the file.
    let tally = Arc::new(Mutex::new(Written::default()));
    let (owned_deps, owned_batch, counter, owned_chunks, owned_hold) = (
        deps.clone(),
        Arc::new(batch.clone()),
        Arc::clone(&tally),
        Arc::clone(chunks),
        Arc::clone(hold),
    );
    let body = futures::stream::iter(0..chunks.len())
        .map(move |at| {
            let (deps, batch, counter, chunks, hold) = (
                owned_deps.clone(),
                Arc::clone(&owned_batch),
                Arc::clone(&counter),
                Arc::clone(&owned_chunks),
                Arc::clone(&owned_hold),
            );
            async move {
                hold.check()?;
                let chunk = &chunks[at];
                file_lines(&deps, &batch, chunk, target, unrun_error, &counter).await
            }
        })
        .buffered(CHUNKS_READ_AHEAD)
        .map(|r| r.map_err(crate::files::UploadError::from))
        .boxed();
    let bytes = match deps.blobs.put_stream(&key, body).await {
        Ok(bytes) => bytes,
        // The taker writes this same file; this one's upload was abandoned.
        Err(_) if hold.lost() => return Ok(None),
        Err(error) => return Err(StoreError::Unavailable(error.to_string())),
    };
    if bytes == 0 {
        deps.blobs.delete(&key).await?;
    }
    let mut written = std::mem::take(&mut *lock(&*tally));
    written.bytes = bytes;
    Ok(Some(written))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere cannot leave a half-updated tally that matters: the finalizer fails.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One chunk's lines of one file: its parts' lines for that file, in order, then (error file,
/// cancel or expiry) a line for every request no part holds.
async fn file_lines(
    deps: &Deps,
    batch: &Batch,
    chunk: &Chunk,
    target: LineTarget,
    unrun_error: Option<(&'static str, &'static str)>,
    tally: &Mutex<Written>,
) -> Result<Bytes, StoreError> {
    // Collected first: no iterator closure lives across an await (the future stays `Send`).
    let reads: Vec<_> = chunk
        .parts
        .iter()
        .filter(|part| part.may_hold(target))
        .map(|part| read_whole(deps, &part.key))
        .collect();
    let bodies: Vec<Bytes> = futures::stream::iter(reads)
        .buffered(PART_READS_IN_FLIGHT)
        .try_collect()
        .await?;
    // (index within the chunk, billed tier, JSON line): a chunk's lines, whichever part holds
    // them, as slices of the parts' bodies rather than copies.
    let mut lines: Vec<(u32, Option<Tier>, Bytes)> = Vec::new();
    for body in &bodies {
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(part_line) = decode_part_line(line)
                && part_line.target == target
            {
                lines.push((
                    part_line.index,
                    part_line.tier,
                    body.slice_ref(part_line.json),
                ));
            }
        }
    }
    if let Some((code, message)) = unrun_error
        && chunk.cursor < chunk.plan.lines
    {
        let done = chunk.done_lines();
        for (index, line) in chunk_lines(deps, batch, chunk).await?.iter().enumerate() {
            if !done.get(index).copied().unwrap_or(false) {
                let json = error_line(deps, &line.custom_id, code, message);
                let index = u32::try_from(index).unwrap_or(u32::MAX);
                lines.push((index, None, Bytes::from(json.into_bytes())));
            }
        }
    }
    // Stable: of two parts holding one line (which the claim's fencing rules out), the first
    // committed wins, so no line is ever written, counted or billed twice.
    lines.sort_by_key(|(index, _, _)| *index);
    lines.dedup_by_key(|(index, _, _)| *index);
    let mut billed = UsageByModel::default();
    let mut out = BytesMut::with_capacity(lines.iter().map(|(_, _, json)| json.len() + 1).sum());
    for (_, tier, json) in &lines {
        if target == LineTarget::Output
            && let Some(line) = billed_line(json, *tier)
        {
            billed.add(&line.model, line.tier, &line.usage);
        }
        out.extend_from_slice(json);
        out.extend_from_slice(b"\n");
    }
    let mut tally = lock(tally);
    tally.lines += lines.len() as u64;
    tally.billed.merge(&billed);
    Ok(out.freeze())
}

/// Every byte of a stored part, in one buffer (as read when it came in one piece).
async fn read_whole(deps: &Deps, key: &str) -> Result<Bytes, StoreError> {
    let mut stream = deps.blobs.get(key).await?;
    let mut only: Option<Bytes> = None;
    let mut whole = BytesMut::new();
    while let Some(piece) = stream.next().await {
        let piece = piece?;
        if only.is_none() && whole.is_empty() {
            only = Some(piece);
            continue;
        }
        if let Some(first) = only.take() {
            whole.extend_from_slice(&first);
        }
        whole.extend_from_slice(&piece);
    }
    Ok(only.unwrap_or_else(|| whole.freeze()))
}

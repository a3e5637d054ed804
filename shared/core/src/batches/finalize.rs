//! Finalizing a batch (`try_finalize`): one winner claims `finalizing` under a lease and
//! assembles the output and error files in input order from the committed parts alone, then
//! ends the batch; a finalizer that takes over an expired lease writes the very same files.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

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
    let native = crate::batches::native::groups::live_while_cancelling(deps, &current).await;
    let outcome = match decisions::finalize_outcome(&current, &chunks, native, now) {
        Ok(outcome) => outcome,
        Err(Some(recheck)) => return Ok(QueueAction::RetryAfter(recheck)),
        Err(None) => return Ok(QueueAction::Ack),
    };
    if outcome != crate::batches::BatchOutcome::Completed {
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
    // The chunk records as of the claim: no checkpoint lands after it.
    let chunks = decisions::planned_chunks(&claimed, deps.batches.chunks(batch).await?);
    let result = assemble(deps, &claimed, &held, &chunks).await?;
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

/// Writes the output and error files from the committed parts in input order, plus an error
/// line for every line no part holds (cancel, expiry), and registers them.
async fn assemble(
    deps: &Deps,
    batch: &Batch,
    lease: &FinalizeLease,
    chunks: &[Chunk],
) -> Result<BatchResult, StoreError> {
    // Counts and usage come from the files as written, one line per request line: whatever
    // parts a crash or a redelivery left, each line is counted and billed exactly once.
    let output = write_file(deps, batch, lease, chunks, LineTarget::Output).await?;
    let errors = write_file(deps, batch, lease, chunks, LineTarget::Error).await?;
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
    Ok(BatchResult {
        outcome: lease.outcome,
        counts,
        usage: usage_by_model.total(),
        // Dated when the files are written; the end's write follows at once.
        counted: UsageCount::of_finished_batch(&usage_by_model, now),
        usage_by_model,
        output_file_id,
        error_file_id,
    })
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
/// summing their usage.
async fn write_file(
    deps: &Deps,
    batch: &Batch,
    lease: &FinalizeLease,
    chunks: &[Chunk],
    target: LineTarget,
) -> Result<Written, StoreError> {
    let file_id = match target {
        LineTarget::Output => &lease.output_file_id,
        LineTarget::Error => &lease.error_file_id,
    };
    let key = file_blob_key(&batch.tenant, file_id);
    let unrun_error = match target {
        LineTarget::Error => lease.outcome.unrun_line_error(),
        LineTarget::Output => None,
    };
    // One chunk at a time, parts in order: memory holds one chunk's lines, never the file.
    let tally = Arc::new(Mutex::new(Written::default()));
    let (owned_deps, owned_batch, counter) =
        (deps.clone(), Arc::new(batch.clone()), Arc::clone(&tally));
    let body = futures::stream::iter(chunks.to_vec())
        .then(move |chunk| {
            let (deps, batch, counter) = (
                owned_deps.clone(),
                Arc::clone(&owned_batch),
                Arc::clone(&counter),
            );
            async move { file_lines(&deps, &batch, &chunk, target, unrun_error, &counter).await }
        })
        .map(|r| r.map_err(crate::files::UploadError::from))
        .boxed();
    let bytes = deps
        .blobs
        .put_stream(&key, body)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    if bytes == 0 {
        deps.blobs.delete(&key).await?;
    }
    let mut written = std::mem::take(&mut *lock(&tally));
    written.bytes = bytes;
    Ok(written)
}

fn lock(tally: &Mutex<Written>) -> std::sync::MutexGuard<'_, Written> {
    // A panic elsewhere cannot leave a half-updated tally that matters: the finalizer fails.
    tally
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
    // (index within the chunk, billed tier, JSON line): a chunk's lines, whichever part holds
    // them.
    let mut lines: Vec<(u32, Option<Tier>, Vec<u8>)> = Vec::new();
    for part in &chunk.parts {
        let whole = read_all(deps, &part.key).await?.concat();
        for line in whole.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Some(part_line) = decode_part_line(line)
                && part_line.target == target
            {
                lines.push((part_line.index, part_line.tier, part_line.json.to_vec()));
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
                lines.push((index, None, json.into_bytes()));
            }
        }
    }
    // Stable: of two parts holding one line (which the claim's fencing rules out), the first
    // committed wins, so no line is ever written, counted or billed twice.
    lines.sort_by_key(|(index, _, _)| *index);
    lines.dedup_by_key(|(index, _, _)| *index);
    let mut billed = UsageByModel::default();
    let mut out = Vec::new();
    for (_, tier, json) in &lines {
        if target == LineTarget::Output
            && let Some(line) = billed_line(json, *tier)
        {
            billed.add(&line.model, line.tier, &line.usage);
        }
        out.extend_from_slice(json);
        out.push(b'\n');
    }
    let mut tally = lock(tally);
    tally.lines += lines.len() as u64;
    tally.billed.merge(&billed);
    Ok(Bytes::from(out))
}

/// Every byte of a stored blob, as the chunks it was read in.
async fn read_all(deps: &Deps, key: &str) -> Result<Vec<Bytes>, StoreError> {
    let mut stream = deps.blobs.get(key).await?;
    let mut chunks = Vec::new();
    while let Some(chunk) = stream.next().await {
        chunks.push(chunk?);
    }
    Ok(chunks)
}

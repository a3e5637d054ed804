//! A batch's native groups as planning makes them and as everything else finds them again:
//! planning reads the native lines of every chunk, groups them ([`super::group_lines`]), writes
//! each group's record (the intent) and the plan, and queues one look per group; a redelivered
//! planning, a cancel's or expiry's finalizer and the reconciler queue them again.

use std::collections::HashMap;
use std::time::Duration;

use super::{
    FileLimits, GroupRecord, LineAt, NativeLineInfo, NativePlan, blob_exists, group_key,
    group_lines, look_is_lost, plan_key, read_json, record_key, write_json,
};
use crate::batches::decisions;
use crate::batches::input::ChunkPlan;
use crate::batches::modes::BatchMode;
use crate::batches::process::chunk_lines;
use crate::batches::{Batch, BatchRef, BatchStatus, Chunk, encode_ranges};
use crate::deps::Deps;
use crate::error::StoreError;
use crate::ports::WorkItem;

/// The provider that runs `model`'s lines as provider batches, if any.
pub fn native_provider(deps: &Deps, model: &str) -> Option<String> {
    deps.upstream
        .batch_route(model)
        .filter(|route| route.mode == BatchMode::Native)
        .map(|route| route.provider)
}

/// Before the batch is planned: groups its native lines, records each group (the intent, no
/// provider batch yet) and then the plan, and records on every chunk plan which of its lines
/// the groups run (`ChunkPlan::native`; none when no model is native), so the processor never
/// asks the configuration again. A redelivery that finds the plan keeps it, and takes the
/// chunks' lines from its groups. Returns the number of groups.
pub async fn prepare_groups(
    deps: &Deps,
    batch: &BatchRef,
    current: &Batch,
    chunks: &mut [ChunkPlan],
    models: &[String],
) -> Result<u32, StoreError> {
    if !models.iter().any(|m| native_provider(deps, m).is_some()) {
        record_native_lines(chunks, std::iter::empty());
        return Ok(0);
    }
    if let Some(plan) = read_json::<NativePlan>(deps, &plan_key(batch)).await {
        let mut lines = Vec::new();
        for group in 0..plan.groups {
            // Planning has not run a look yet, so every record is there; one unreadable now is
            // read again on the message's next delivery.
            let record = read_json::<GroupRecord>(deps, &record_key(batch, group))
                .await
                .ok_or_else(|| {
                    StoreError::Unavailable(format!("native group {group} could not be read"))
                })?;
            lines.extend(record.lines);
        }
        record_native_lines(chunks, lines);
        return Ok(plan.groups);
    }
    let mut native = Vec::new();
    for plan in chunks.iter() {
        let lines = chunk_lines(deps, current, &Chunk::new(plan.clone())).await?;
        for (index, line) in lines.into_iter().enumerate() {
            let Some(provider) = native_provider(deps, &line.model) else {
                continue;
            };
            native.push(NativeLineInfo {
                at: LineAt(plan.index, u32::try_from(index).unwrap_or(u32::MAX)),
                provider,
                model: line.model,
                body_bytes: line.body.len() as u64,
            });
        }
    }
    let groups = group_lines(native, FileLimits::default());
    record_native_lines(
        chunks,
        groups.iter().flat_map(|group| group.lines.iter().copied()),
    );
    let count = u32::try_from(groups.len()).unwrap_or(u32::MAX);
    for (n, group) in (0..count).zip(groups) {
        // No look has run before the plan is written, so no record holds a provider batch yet.
        let record = GroupRecord {
            provider: group.provider,
            model: group.model,
            key: group_key(batch, n),
            lines: group.lines,
            provider_batch_id: None,
            polls: 0,
            next_poll_at: None,
            cancel_sent: false,
        };
        write_json(deps, &record_key(batch, n), &record).await?;
    }
    write_json(deps, &plan_key(batch), &NativePlan { groups: count }).await?;
    tracing::info!(groups = count, "native groups planned");
    Ok(count)
}

/// Records on each chunk plan the lines of it that native groups run (none for the others).
fn record_native_lines(chunks: &mut [ChunkPlan], lines: impl IntoIterator<Item = LineAt>) {
    let mut by_chunk: HashMap<u32, Vec<u32>> = HashMap::new();
    for at in lines {
        by_chunk.entry(at.chunk()).or_default().push(at.line());
    }
    for plan in chunks {
        let lines = by_chunk.get(&plan.index).map_or(&[][..], Vec::as_slice);
        plan.native = Some(encode_ranges(lines));
    }
}

/// Queues one look at each of the batch's `groups` groups.
pub async fn queue_looks(
    deps: &Deps,
    batch: &BatchRef,
    groups: u32,
    delay: Duration,
) -> Result<(), StoreError> {
    for group in 0..groups {
        let item = WorkItem::PollNative {
            batch: batch.clone(),
            group,
        };
        deps.queue.enqueue(&item, delay).await?;
    }
    Ok(())
}

/// Looks at every group now (a cancel or expiry: their provider batches are to be cancelled).
pub async fn wake_groups(deps: &Deps, batch: &BatchRef) -> Result<(), StoreError> {
    if let Some(plan) = read_json::<NativePlan>(deps, &plan_key(batch)).await {
        queue_looks(deps, batch, plan.groups, Duration::ZERO).await?;
    }
    Ok(())
}

/// For a cancel's finalizer: whether a group of the cancelling batch still has its record, that
/// is, has not yet collected (or dropped) its provider batch. Only a planned cancelling batch's
/// groups are waited for (a cancel that refused the plan left records no look ever follows),
/// and only when its `chunks` name native lines, so for any other nothing is read. The wait
/// needs nothing of a record but that it is there (`decisions::finalize_outcome`): a record
/// holds every line of its group (~0.6 MB at 50,000 lines) and is rechecked every
/// [`decisions::NATIVE_RECHECK`], so it is probed, not read.
pub async fn live_while_cancelling(deps: &Deps, current: &Batch, chunks: &[Chunk]) -> bool {
    if current.status != BatchStatus::Cancelling
        || current.chunks == 0
        || !decisions::may_have_native_lines(chunks)
    {
        return false;
    }
    let batch = current.batch_ref();
    let Some(plan) = read_json::<NativePlan>(deps, &plan_key(&batch)).await else {
        return false;
    };
    for group in 0..plan.groups {
        if blob_exists(deps, &record_key(&batch, group)).await {
            return true;
        }
    }
    false
}

/// For the reconciler and a redelivered planning: queues a look at every group whose own look
/// is long overdue (its message was lost); a group still looked at in time is left alone, so
/// its backoff holds. A batch whose `chunks` name no native lines has no groups, and nothing
/// of theirs is read: the reconciler passes every idle batch through here.
pub async fn queue_lost_looks(
    deps: &Deps,
    batch: &BatchRef,
    chunks: &[Chunk],
) -> Result<usize, StoreError> {
    if !decisions::may_have_native_lines(chunks) {
        return Ok(0);
    }
    let Some(plan) = read_json::<NativePlan>(deps, &plan_key(batch)).await else {
        return Ok(0);
    };
    let now = deps.clock.now().0;
    let mut queued = 0;
    for group in 0..plan.groups {
        let Some(record) = read_json::<GroupRecord>(deps, &record_key(batch, group)).await else {
            continue;
        };
        if look_is_lost(&record, now, deps.work_policy.stranded_after) {
            let item = WorkItem::PollNative {
                batch: batch.clone(),
                group,
            };
            deps.queue.enqueue(&item, Duration::ZERO).await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// The callers' `custom_id`s of the group's lines, and their chunks' request lines read once.
pub(crate) async fn group_request_lines(
    deps: &Deps,
    current: &Batch,
    record: &GroupRecord,
) -> Result<HashMap<LineAt, crate::batches::input::RequestLine>, StoreError> {
    let batch = current.batch_ref();
    let chunks = deps.batches.chunks(&batch).await?;
    let mut wanted: Vec<u32> = record.lines.iter().map(|at| at.chunk()).collect();
    wanted.dedup();
    let mut found = HashMap::new();
    for chunk in chunks.iter().filter(|c| wanted.contains(&c.plan.index)) {
        let lines = chunk_lines(deps, current, chunk).await?;
        for at in record
            .lines
            .iter()
            .filter(|at| at.chunk() == chunk.plan.index)
        {
            if let Some(line) = lines.get(at.line() as usize) {
                found.insert(*at, line.clone());
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(index: u32) -> ChunkPlan {
        ChunkPlan {
            index,
            start: 0,
            end: 1,
            lines: 5,
            native: None,
        }
    }

    #[test]
    fn every_chunk_records_its_native_lines_and_a_chunk_without_any_records_none() {
        let mut chunks = [plan(0), plan(1)];
        record_native_lines(&mut chunks, [LineAt(0, 4), LineAt(0, 1), LineAt(0, 2)]);
        assert_eq!(chunks[0].native.as_deref(), Some("1-2,4"));
        assert_eq!(chunks[1].native.as_deref(), Some(""));
        let recorded = Chunk::new(chunks[0].clone());
        assert_eq!(
            recorded.native_lines(),
            Some(vec![false, true, true, false, true])
        );
        assert_eq!(Chunk::new(plan(2)).native_lines(), None);
    }
}

//! The batch state machine's decisions, as pure functions of what a store read: whether planning
//! may settle a batch, whether a batch takes results, what a chunk claim answers, who may write,
//! complete or release a chunk, when a batch is finalized and with which outcome, what a finalize
//! claim holds, what a cancel does, and whether a create stands over its input file. Both adapters load, ask these, and write conditionally;
//! the finalizer asks `finalize_outcome`.

use std::time::Duration;

use crate::batches::{
    Batch, BatchCancelOutcome, BatchOutcome, BatchStatus, CANCEL_GRACE, Chunk, ChunkClaim,
    ChunkWrite, ClaimPurpose, FinalizeLease, NATIVE_CANCEL_GRACE,
};
use crate::clock::Timestamp;
use crate::files::FileRecord;
use crate::ports::Lease;

/// Whether planning may settle a batch in `status`, planning it or failing its validation: only
/// while it is validating. A batch cancelled or expired meanwhile keeps that, and a second
/// planning of a planned batch (a redelivered message) changes nothing.
pub fn planning_settles(status: BatchStatus) -> bool {
    status == BatchStatus::Validating
}

/// Whether a batch just written stands, given its input file's record as read after the write.
/// A file delete removes the record first and then looks for unfinished batches reading it,
/// keeping the bytes for any it finds. So a record still there means the delete (if any) will
/// find this batch; a record gone means the delete may have looked before this batch existed and
/// removed the bytes, and the create takes the batch back and answers 404, as if the delete had
/// landed first.
pub fn create_stands(input_after_write: Option<&FileRecord>) -> bool {
    input_after_write.is_some()
}

/// Whether the batch's window is still open at `now`: past it, the expiry's finalizer owns it.
pub fn window_open(batch: &Batch, now: Timestamp) -> bool {
    now < batch.expires_at
}

/// Whether the batch takes results now: running and inside its window. Chunk claims and part
/// commits both need it, so no line is committed after the finalizer may have read the parts.
pub fn accepts_results(batch: &Batch, now: Timestamp) -> bool {
    batch.status == BatchStatus::InProgress && window_open(batch, now)
}

/// Whether a chunk may be claimed for `purpose` on the batch as read. Running lines needs a batch
/// that takes results. Collecting the lines a provider batch ran is also allowed while the batch
/// is cancelling (window or not): they are paid for and a cancel keeps them, their commits
/// answer `Stopping` and are kept ([`chunk_write_in`]), and the cancel's finalizer waits for the
/// native groups ([`finalize_outcome`], at most [`NATIVE_CANCEL_GRACE`]) and then fences them
/// out by moving the batch to `finalizing`.
pub fn claim_allowed(batch: &Batch, purpose: ClaimPurpose, now: Timestamp) -> bool {
    match purpose {
        ClaimPurpose::Run => accepts_results(batch, now),
        ClaimPurpose::Collect => {
            accepts_results(batch, now) || batch.status == BatchStatus::Cancelling
        }
    }
}

/// A chunk claim under `lease` for `purpose`, decided on the batch and chunk as read: the batch
/// and the chunk as the claim leaves them, or the answer instead of taking it.
///
/// The answers come in one order on every store: an unknown batch or chunk is `Closed`, a
/// finished chunk `Done` (even when the batch no longer takes results, so its message is simply
/// dropped), a batch that takes no results for `purpose` ([`claim_allowed`]) `Closed`, a chunk
/// under a live lease `Busy`.
// The error is only ever a refusal (`Busy`, `Done`, `Closed`), never the large `Claimed`; the
// stores hand it on as their answer, so boxing it would cost an allocation per claim for nothing.
#[allow(clippy::result_large_err)]
pub fn chunk_claim(
    batch: Option<Batch>,
    chunk: Option<Chunk>,
    lease: &Lease,
    purpose: ClaimPurpose,
    now: Timestamp,
) -> Result<(Batch, Chunk), ChunkClaim> {
    let (Some(batch), Some(chunk)) = (batch, chunk) else {
        return Err(ChunkClaim::Closed);
    };
    if chunk.done {
        return Err(ChunkClaim::Done);
    }
    if !claim_allowed(&batch, purpose, now) {
        return Err(ChunkClaim::Closed);
    }
    if let Some(until) = chunk.lease_expires_at.filter(|_| chunk.is_claimed(now)) {
        return Err(ChunkClaim::Busy {
            lease_expires_at: until,
        });
    }
    let claimed = Chunk {
        lease_token: Some(lease.token.clone()),
        lease_expires_at: Some(lease.expires_at),
        ..chunk
    };
    Ok((batch, claimed))
}

/// What a write by a chunk's holder answers while the batch is in `status`, the window aside: a
/// running batch takes its results; a cancelling one still takes the results of lines that
/// finished (they are paid for, and the cancel's finalizer waits for the claims to go, so none
/// is missed) but tells the holder to stop; any other refuses (a finalizer may have read the
/// parts). The AWS adapter builds its write conditions from this, status by status.
pub fn chunk_write_in(status: BatchStatus) -> ChunkWrite {
    match status {
        BatchStatus::InProgress => ChunkWrite::Running,
        BatchStatus::Cancelling => ChunkWrite::Stopping,
        BatchStatus::Validating
        | BatchStatus::Finalizing
        | BatchStatus::Completed
        | BatchStatus::Failed
        | BatchStatus::Expired
        | BatchStatus::Cancelled => ChunkWrite::Refused,
    }
}

/// Whether a commit that would answer `answer` also needs the batch's window open: a running
/// batch's does (past the window, the expiry's finalizer owns the batch); a cancelling batch's
/// is fenced by the cancel's finalizer instead.
pub fn commit_needs_window(answer: ChunkWrite) -> bool {
    answer == ChunkWrite::Running
}

/// Whether `token` holds the chunk for its holder's writes (commit, renew, complete): the chunk
/// is unfinished and claimed with that token.
pub fn holds_chunk(chunk: &Chunk, token: &str) -> bool {
    !chunk.done && chunk.lease_token.as_deref() == Some(token)
}

/// What committing a part under `token` answers: refused unless `token` holds the chunk; then
/// as the batch's status has it ([`chunk_write_in`]), refused outside the window when
/// [`commit_needs_window`].
pub fn commit_answer(batch: &Batch, chunk: &Chunk, token: &str, now: Timestamp) -> ChunkWrite {
    match renew_answer(batch, chunk, token) {
        answer if commit_needs_window(answer) && !window_open(batch, now) => ChunkWrite::Refused,
        answer => answer,
    }
}

/// What renewing the lease under `token` answers: as a commit, without the window (a renewal
/// adds no result; the window's end is for the finalizer to act on).
pub fn renew_answer(batch: &Batch, chunk: &Chunk, token: &str) -> ChunkWrite {
    if !holds_chunk(chunk, token) {
        return ChunkWrite::Refused;
    }
    chunk_write_in(batch.status)
}

/// The chunk as completing it under `token` leaves it (done, its lease gone; the batch counts one
/// more chunk done), or `None` when `token` does not hold it: a chunk is counted done once.
pub fn completed_chunk(chunk: Chunk, token: &str) -> Option<Chunk> {
    if !holds_chunk(&chunk, token) {
        return None;
    }
    Some(Chunk {
        done: true,
        lease_token: None,
        lease_expires_at: None,
        ..chunk
    })
}

/// The chunk as its holder's release under `token` leaves it (its lease gone, so the next claim
/// takes it at once), or `None` when the chunk's lease is not that token's: a stale holder never
/// frees a chunk another claim holds.
pub fn released_chunk(chunk: Chunk, token: &str) -> Option<Chunk> {
    if chunk.lease_token.as_deref() != Some(token) {
        return None;
    }
    Some(Chunk {
        lease_token: None,
        lease_expires_at: None,
        ..chunk
    })
}

/// The lease a finalize claim holds on `current`: the caller's on a batch not yet finalizing; a
/// take-over of a finalizing batch whose finalizer's lease ended, keeping the outcome and file
/// ids its predecessor chose (so both write the very same files); none otherwise (another
/// finalizer holds it, or it is terminal). A cancelling batch takes only a lease that assembles
/// the cancel: an outcome chosen before a cancel landed (all lines done, say) would end as
/// `completed` a batch whose cancel was answered 200; the cancel's own finalize assembles it.
/// A batch already finalizing under the caller's own token is this very claim, applied by an
/// earlier try whose answer was lost (tokens are fresh per claim): it holds the lease as written,
/// or the claimant would leave the batch `finalizing` under its own live lease, unassembled.
pub fn finalize_lease(
    current: &Batch,
    lease: &FinalizeLease,
    now: Timestamp,
) -> Option<FinalizeLease> {
    match (current.status, &current.finalize) {
        (BatchStatus::Finalizing, Some(previous)) if previous.token == lease.token => {
            Some(previous.clone())
        }
        (BatchStatus::Validating | BatchStatus::InProgress, _) => Some(lease.clone()),
        (BatchStatus::Cancelling, _) if lease.outcome == BatchOutcome::Cancelled => {
            Some(lease.clone())
        }
        (BatchStatus::Finalizing, Some(previous)) if previous.expires_at <= now => {
            Some(FinalizeLease {
                token: lease.token.clone(),
                expires_at: lease.expires_at,
                ..previous.clone()
            })
        }
        _ => None,
    }
}

/// The finalizer's lease extended to `until`, while `token` still holds it
/// ([`finalize_holds`]): assembling a large batch outlasts one lease, and a finalizer that kept
/// working would otherwise be taken over mid-way and start again from nothing.
pub fn renewed_finalize(current: &Batch, token: &str, until: Timestamp) -> Option<FinalizeLease> {
    if !finalize_holds(current, token) {
        return None;
    }
    let held = current.finalize.as_ref()?;
    Some(FinalizeLease {
        expires_at: until.max(held.expires_at),
        ..held.clone()
    })
}

/// The batch as a finalize claim at `now` under `held` leaves it.
pub fn finalizing(current: Batch, held: FinalizeLease, now: Timestamp) -> Batch {
    Batch {
        status: BatchStatus::Finalizing,
        finalizing_at: current.finalizing_at.or(Some(now)),
        finalize: Some(held),
        ..current
    }
}

/// Whether the finalizer holding `token` may still end the batch.
pub fn finalize_holds(batch: &Batch, token: &str) -> bool {
    batch.status == BatchStatus::Finalizing
        && batch.finalize.as_ref().is_some_and(|f| f.token == token)
}

/// What a cancel of a batch does, decided on the batch as read.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelDecision {
    /// Validating or in progress: move it to `cancelling`; the batch as that leaves it.
    Cancel(Batch),
    /// Nothing to write: the answer as it stands.
    Answer(BatchCancelOutcome),
}

/// A cancel of a cancelling or cancelled batch is accepted as it is, and so is one of a batch
/// whose finalizer is assembling a cancel (a repeated cancel then answers 200, as the first did,
/// rather than the 409 the SDK raises as `ConflictError`). A finalizing batch finishes what it
/// assembles, so one assembling any other outcome, and a completed, failed or expired one, answer
/// `Finished`.
pub fn cancel_decision(current: Option<Batch>, now: Timestamp) -> CancelDecision {
    let Some(current) = current else {
        return CancelDecision::Answer(BatchCancelOutcome::NotFound);
    };
    let assembling_a_cancel = current
        .finalize
        .as_ref()
        .is_some_and(|lease| lease.outcome == BatchOutcome::Cancelled);
    match current.status {
        BatchStatus::Finalizing if assembling_a_cancel => {
            CancelDecision::Answer(BatchCancelOutcome::Accepted(current))
        }
        status if status.is_cancellable() => CancelDecision::Cancel(Batch {
            status: BatchStatus::Cancelling,
            cancelling_at: Some(now),
            ..current
        }),
        BatchStatus::Cancelling | BatchStatus::Cancelled => {
            CancelDecision::Answer(BatchCancelOutcome::Accepted(current))
        }
        // Finalizing for another outcome, or terminal: too late to cancel.
        _ => CancelDecision::Answer(BatchCancelOutcome::Finished(current)),
    }
}

/// The chunks that are lines of the batch: those its planning transition counted. A plan whose
/// transition a cancel refused may already have stored its chunk records (DynamoDB takes them
/// before the transition, as a batch may have more chunks than one transaction holds); those
/// never ran and are no part of a batch that never left `validating`, so a finalizer neither
/// waits on them nor writes their lines as cancelled.
pub fn planned_chunks(batch: &Batch, chunks: Vec<Chunk>) -> Vec<Chunk> {
    chunks
        .into_iter()
        .filter(|chunk| chunk.plan.index < batch.chunks)
        .collect()
}

/// Whether an unfinished chunk waits only on its native groups: it has lines left, and every
/// one of them is a native group's (as planning recorded). A run of the chunk adds nothing: the
/// group's look commits those lines and completes the chunk. Lines of a native group stay
/// uncommitted only while the group lives (its look deletes the record after committing them),
/// so the reconciler leaves such a chunk alone and re-queues only a lost look.
pub fn waits_only_on_native(chunk: &Chunk) -> bool {
    let Some(native) = chunk.native_lines() else {
        return false;
    };
    let left: Vec<bool> = chunk
        .done_lines()
        .iter()
        .zip(&native)
        .filter(|(done, _)| !**done)
        .map(|(_, native)| *native)
        .collect();
    !chunk.done && !left.is_empty() && left.iter().all(|native| *native)
}

/// Whether native groups may run some of a batch's lines, as planning recorded on its chunks
/// (`ChunkPlan::native`): a chunk that names native lines, or one planned before that was
/// recorded, may; so may a batch not planned yet (its chunks are not known). A batch whose
/// chunks all say none has no groups, and nothing of theirs needs reading.
pub fn may_have_native_lines(chunks: &[Chunk]) -> bool {
    chunks.is_empty()
        || chunks.iter().any(|chunk| {
            chunk
                .plan
                .native
                .as_deref()
                .is_none_or(|lines| !lines.is_empty())
        })
}

/// A finalize that must wait (claims still live) looks again this soon.
pub const FINALIZE_RECHECK: Duration = Duration::from_secs(2);

/// A cancel's finalize that waits only on native groups looks again this soon: the group's look
/// asks for finalization itself once its lines are in, so this is the backstop.
pub const NATIVE_RECHECK: Duration = Duration::from_secs(10);

/// What a finalizer decides about a batch right now: the outcome to assemble, or not yet (with
/// when to look again, or `None` when something else will ask again: a running batch's last
/// chunk, planning, or nothing for a terminal batch). A cancelled or expired batch waits up to
/// [`CANCEL_GRACE`] for processors to let go of their chunks; a cancelled one also waits up to
/// [`NATIVE_CANCEL_GRACE`] while `native_groups_live` (a native group has not yet collected what
/// its cancelled provider batch finished); a finalizer whose lease ended is taken over with the
/// outcome it chose.
pub fn finalize_outcome(
    batch: &Batch,
    chunks: &[Chunk],
    native_groups_live: bool,
    now: Timestamp,
) -> Result<BatchOutcome, Option<Duration>> {
    let all_done = chunks.iter().all(|c| c.done);
    let claimed = chunks.iter().any(|c| c.is_claimed(now));
    match batch.status {
        BatchStatus::InProgress if all_done && batch.chunks_done >= batch.chunks => {
            Ok(BatchOutcome::Completed)
        }
        BatchStatus::InProgress if now >= batch.expires_at => {
            if claimed && now < batch.expires_at.plus(CANCEL_GRACE) {
                Err(Some(FINALIZE_RECHECK))
            } else {
                Ok(BatchOutcome::Expired)
            }
        }
        BatchStatus::InProgress => Err(None),
        BatchStatus::Cancelling => {
            let since = batch.cancelling_at.unwrap_or(now);
            if claimed && now < since.plus(CANCEL_GRACE) {
                Err(Some(FINALIZE_RECHECK))
            } else if native_groups_live && now < since.plus(NATIVE_CANCEL_GRACE) {
                Err(Some(NATIVE_RECHECK))
            } else {
                Ok(BatchOutcome::Cancelled)
            }
        }
        // Not planned yet: planning runs first and then comes back here.
        BatchStatus::Validating if now >= batch.expires_at => Ok(BatchOutcome::Expired),
        BatchStatus::Validating => Err(None),
        BatchStatus::Finalizing => match &batch.finalize {
            Some(lease) if lease.expires_at <= now => Ok(lease.outcome),
            Some(lease) => Err(Some(now.until(lease.expires_at) + Duration::from_secs(1))),
            None => Err(None),
        },
        BatchStatus::Failed
        | BatchStatus::Completed
        | BatchStatus::Expired
        | BatchStatus::Cancelled => Err(None),
    }
}

/// What a look at a native group does, decided on the batch as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeLook {
    /// The batch runs: submit the group, follow its provider batch, collect it when it ends.
    Run,
    /// The batch is cancelling: no submit; cancel the provider batch once, follow it until it
    /// ends, and collect what it finished (under [`ClaimPurpose::Collect`] claims).
    WindDown,
    /// The batch takes no more of the group's lines (expired, finalizing, ended): cancel the
    /// provider batch and drop the group; the finalizer writes the lines not in.
    Stop,
}

/// What a native group's look does on the batch as read (validating aside: planning first).
pub fn native_look(batch: &Batch, now: Timestamp) -> NativeLook {
    if accepts_results(batch, now) {
        NativeLook::Run
    } else if claim_allowed(batch, ClaimPurpose::Collect, now) {
        NativeLook::WindDown
    } else {
        NativeLook::Stop
    }
}

#[cfg(test)]
mod tests;

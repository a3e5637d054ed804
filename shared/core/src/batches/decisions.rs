//! The batch state machine's decisions, as pure functions of what a store read: whether planning
//! may settle a batch, whether a batch takes results, what a chunk claim answers, who may write,
//! complete or release a chunk, when a batch is finalized and with which outcome, what a finalize
//! claim holds, what a cancel does, and whether a create stands over its input file. Both adapters load, ask these, and write conditionally;
//! the finalizer asks `finalize_outcome`.

use std::time::Duration;

use crate::batches::{
    Batch, BatchCancelOutcome, BatchOutcome, BatchStatus, CANCEL_GRACE, Chunk, ChunkClaim,
    ChunkWrite, FinalizeLease,
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

/// A chunk claim under `lease`, decided on the batch and chunk as read: the batch and the chunk
/// as the claim leaves them, or the answer instead of taking it.
///
/// The answers come in one order on every store: an unknown batch or chunk is `Closed`, a
/// finished chunk `Done` (even when the batch no longer takes results, so its message is simply
/// dropped), a batch that takes no results `Closed`, a chunk under a live lease `Busy`.
pub fn chunk_claim(
    batch: Option<Batch>,
    chunk: Option<Chunk>,
    lease: &Lease,
    now: Timestamp,
) -> Result<(Batch, Chunk), ChunkClaim> {
    let (Some(batch), Some(chunk)) = (batch, chunk) else {
        return Err(ChunkClaim::Closed);
    };
    if chunk.done {
        return Err(ChunkClaim::Done);
    }
    if !accepts_results(&batch, now) {
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
pub fn finalize_lease(
    current: &Batch,
    lease: &FinalizeLease,
    now: Timestamp,
) -> Option<FinalizeLease> {
    match (current.status, &current.finalize) {
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

/// A finalize that must wait (claims still live) looks again this soon.
pub const FINALIZE_RECHECK: Duration = Duration::from_secs(2);

/// What a finalizer decides about a batch right now: the outcome to assemble, or not yet (with
/// when to look again, or `None` when something else will ask again: a running batch's last
/// chunk, planning, or nothing for a terminal batch). A cancelled or expired batch waits up to
/// [`CANCEL_GRACE`] for processors to let go of their chunks; a finalizer whose lease ended is
/// taken over with the outcome it chose.
pub fn finalize_outcome(
    batch: &Batch,
    chunks: &[Chunk],
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

#[cfg(test)]
mod tests {
    use std::sync::LazyLock;

    use super::*;
    use crate::batches::input::ChunkPlan;
    use crate::batches::{BatchOutcome, NewBatch};
    use crate::ids::{BatchId, FileId, IdGenerator, TenantId};

    const NOW: Timestamp = Timestamp(1_000);

    static IDS: LazyLock<(BatchId, FileId)> = LazyLock::new(|| {
        let ids = IdGenerator::new();
        (ids.batch_id(Timestamp(0)), ids.file_id(Timestamp(0)))
    });

    fn batch(status: BatchStatus) -> Batch {
        let new = NewBatch {
            id: IDS.0.clone(),
            tenant: TenantId::parse("acme").unwrap(),
            input_file_id: IDS.1.clone(),
            endpoint: crate::ApiEndpoint::ChatCompletions,
            completion_window: crate::batches::COMPLETION_WINDOW.into(),
            metadata: None,
            output_expires_after: None,
            created_at: Timestamp(0),
            expires_at: Timestamp(10_000),
        };
        Batch {
            status,
            ..Batch::from_new(&new)
        }
    }

    fn chunk() -> Chunk {
        Chunk::new(ChunkPlan {
            index: 0,
            start: 0,
            end: 10,
            lines: 2,
        })
    }

    #[test]
    fn chunks_stored_by_a_plan_a_cancel_refused_are_no_lines_of_the_batch() {
        let cancelled_while_validating = Batch {
            cancelling_at: Some(NOW),
            ..batch(BatchStatus::Cancelling)
        };
        assert!(planned_chunks(&cancelled_while_validating, vec![chunk()]).is_empty());
        let planned = Batch {
            chunks: 1,
            ..batch(BatchStatus::Cancelling)
        };
        assert_eq!(planned_chunks(&planned, vec![chunk()]), vec![chunk()]);
    }

    fn lease(token: &str, expires_at: Timestamp) -> FinalizeLease {
        FinalizeLease {
            token: token.into(),
            expires_at,
            outcome: BatchOutcome::Completed,
            output_file_id: IDS.1.clone(),
            error_file_id: IDS.1.clone(),
        }
    }

    #[test]
    fn only_a_running_batch_inside_its_window_takes_results() {
        for status in BatchStatus::ALL {
            assert_eq!(
                accepts_results(&batch(status), NOW),
                status == BatchStatus::InProgress
            );
        }
        assert!(!accepts_results(
            &batch(BatchStatus::InProgress),
            Timestamp(10_000)
        ));
    }

    fn chunk_lease() -> Lease {
        Lease {
            token: "u".into(),
            expires_at: Timestamp(3_000),
        }
    }

    fn refusal(batch: Option<Batch>, chunk: Option<Chunk>) -> Option<ChunkClaim> {
        chunk_claim(batch, chunk, &chunk_lease(), NOW).err()
    }

    #[test]
    fn a_chunk_claim_answers_closed_done_closed_busy_in_that_order() {
        let running = || Some(batch(BatchStatus::InProgress));
        let cancelling = || Some(batch(BatchStatus::Cancelling));
        assert_eq!(refusal(None, Some(chunk())), Some(ChunkClaim::Closed));
        assert_eq!(refusal(running(), None), Some(ChunkClaim::Closed));
        let done = Chunk {
            done: true,
            ..chunk()
        };
        assert_eq!(refusal(cancelling(), Some(done)), Some(ChunkClaim::Done));
        assert_eq!(
            refusal(cancelling(), Some(chunk())),
            Some(ChunkClaim::Closed)
        );
        let held = Chunk {
            lease_token: Some("t".into()),
            lease_expires_at: Some(Timestamp(2_000)),
            ..chunk()
        };
        assert_eq!(
            refusal(running(), Some(held)),
            Some(ChunkClaim::Busy {
                lease_expires_at: Timestamp(2_000)
            })
        );
    }

    #[test]
    fn a_chunk_whose_lease_ended_is_claimed_again_under_the_new_lease() {
        let stale = Chunk {
            lease_token: Some("t".into()),
            lease_expires_at: Some(NOW),
            cursor: 1,
            ..chunk()
        };
        let claimed = chunk_claim(
            Some(batch(BatchStatus::InProgress)),
            Some(stale),
            &chunk_lease(),
            NOW,
        );
        let Ok((_, chunk)) = claimed else {
            panic!("not claimed: {claimed:?}");
        };
        assert_eq!(chunk.lease_token.as_deref(), Some("u"));
        assert_eq!(chunk.lease_expires_at, Some(Timestamp(3_000)));
        assert_eq!(chunk.cursor, 1);
    }

    #[test]
    fn a_part_is_committed_only_under_the_chunks_token_while_the_batch_takes_results() {
        let held = Chunk {
            lease_token: Some("t".into()),
            ..chunk()
        };
        let running = batch(BatchStatus::InProgress);
        assert_eq!(
            commit_answer(&running, &held, "t", NOW),
            ChunkWrite::Running
        );
        assert_eq!(
            commit_answer(&running, &held, "u", NOW),
            ChunkWrite::Refused
        );
        let past = Timestamp(10_000);
        assert_eq!(
            commit_answer(&running, &held, "t", past),
            ChunkWrite::Refused
        );
        assert_eq!(renew_answer(&running, &held, "t"), ChunkWrite::Running);
        let done = Chunk {
            done: true,
            ..held.clone()
        };
        assert_eq!(
            commit_answer(&running, &done, "t", NOW),
            ChunkWrite::Refused
        );
        for status in [
            BatchStatus::Validating,
            BatchStatus::Finalizing,
            BatchStatus::Completed,
            BatchStatus::Failed,
            BatchStatus::Expired,
            BatchStatus::Cancelled,
        ] {
            assert_eq!(
                commit_answer(&batch(status), &held, "t", NOW),
                ChunkWrite::Refused
            );
        }
    }

    #[test]
    fn a_cancelling_batch_still_takes_its_holders_finished_lines_and_tells_it_to_stop() {
        let held = Chunk {
            lease_token: Some("t".into()),
            ..chunk()
        };
        let cancelling = batch(BatchStatus::Cancelling);
        assert_eq!(
            commit_answer(&cancelling, &held, "t", NOW),
            ChunkWrite::Stopping
        );
        assert_eq!(
            commit_answer(&cancelling, &held, "t", Timestamp(10_000)),
            ChunkWrite::Stopping,
            "the cancel's finalizer, not the window, fences it"
        );
        assert_eq!(renew_answer(&cancelling, &held, "t"), ChunkWrite::Stopping);
        assert_eq!(
            commit_answer(&cancelling, &held, "u", NOW),
            ChunkWrite::Refused
        );
    }

    #[test]
    fn only_a_validating_batch_is_planned_or_failed() {
        for status in BatchStatus::ALL {
            assert_eq!(
                planning_settles(status),
                status == BatchStatus::Validating,
                "{status:?}"
            );
        }
    }

    #[test]
    fn a_chunk_is_completed_once_and_only_under_its_token() {
        let held = Chunk {
            lease_token: Some("t".into()),
            lease_expires_at: Some(Timestamp(2_000)),
            ..chunk()
        };
        assert_eq!(completed_chunk(held.clone(), "u"), None);
        let done = completed_chunk(held, "t").unwrap();
        assert_eq!(
            (
                done.done,
                done.lease_token.as_deref(),
                done.lease_expires_at
            ),
            (true, None, None)
        );
        assert_eq!(completed_chunk(done, "t"), None);
        assert_eq!(completed_chunk(chunk(), "t"), None);
    }

    #[test]
    fn a_chunk_is_released_only_by_the_token_that_holds_it() {
        let held = Chunk {
            lease_token: Some("t".into()),
            lease_expires_at: Some(Timestamp(2_000)),
            cursor: 1,
            ..chunk()
        };
        assert_eq!(released_chunk(held.clone(), "u"), None);
        assert_eq!(released_chunk(chunk(), "t"), None);
        let released = released_chunk(held, "t").unwrap();
        assert_eq!(
            (
                released.lease_token,
                released.lease_expires_at,
                released.cursor
            ),
            (None, None, 1)
        );
    }

    #[test]
    fn only_a_running_batchs_commits_need_its_window() {
        assert!(commit_needs_window(ChunkWrite::Running));
        assert!(!commit_needs_window(ChunkWrite::Stopping));
        assert!(!commit_needs_window(ChunkWrite::Refused));
    }

    #[test]
    fn a_finalize_claim_takes_an_unfinalized_batch_with_the_callers_lease() {
        let mine = lease("new", Timestamp(5_000));
        for status in [BatchStatus::Validating, BatchStatus::InProgress] {
            assert_eq!(
                finalize_lease(&batch(status), &mine, NOW),
                Some(mine.clone())
            );
        }
        let cancel = FinalizeLease {
            outcome: BatchOutcome::Cancelled,
            ..mine.clone()
        };
        assert_eq!(
            finalize_lease(&batch(BatchStatus::Cancelling), &cancel, NOW),
            Some(cancel.clone())
        );
        for status in BatchStatus::TERMINAL {
            assert_eq!(finalize_lease(&batch(status), &mine, NOW), None);
        }
    }

    #[test]
    fn an_outcome_chosen_before_a_cancel_landed_cannot_finalize_the_cancelling_batch() {
        for outcome in [BatchOutcome::Completed, BatchOutcome::Expired] {
            let chosen_while_running = FinalizeLease {
                outcome,
                ..lease("new", Timestamp(5_000))
            };
            assert_eq!(
                finalize_lease(&batch(BatchStatus::Cancelling), &chosen_while_running, NOW),
                None,
                "{outcome:?}"
            );
        }
    }

    #[test]
    fn a_finalize_take_over_keeps_the_predecessors_outcome_and_files_but_not_its_token() {
        let previous = FinalizeLease {
            outcome: BatchOutcome::Cancelled,
            ..lease("old", NOW)
        };
        let current = Batch {
            finalize: Some(previous),
            ..batch(BatchStatus::Finalizing)
        };
        let held = finalize_lease(&current, &lease("new", Timestamp(5_000)), NOW);
        assert_eq!(
            held.as_ref()
                .map(|h| (h.token.as_str(), h.expires_at, h.outcome)),
            Some(("new", Timestamp(5_000), BatchOutcome::Cancelled))
        );
        let live = finalize_lease(&current, &lease("new", Timestamp(5_000)), Timestamp(999));
        assert_eq!(live, None);
    }

    #[test]
    fn finalizing_keeps_the_first_finalizing_time_and_only_its_token_holds() {
        let first = finalizing(batch(BatchStatus::InProgress), lease("a", NOW), NOW);
        let again = finalizing(first, lease("b", NOW), Timestamp(4_000));
        assert_eq!(again.finalizing_at, Some(NOW));
        assert!(finalize_holds(&again, "b"));
        assert!(!finalize_holds(&again, "a"));
        assert!(!finalize_holds(&batch(BatchStatus::Completed), "b"));
    }

    fn done_chunk() -> Chunk {
        Chunk {
            done: true,
            ..chunk()
        }
    }

    #[test]
    fn a_running_batch_completes_once_every_chunk_is_done() {
        let running = Batch {
            chunks: 1,
            chunks_done: 1,
            ..batch(BatchStatus::InProgress)
        };
        assert_eq!(
            finalize_outcome(&running, &[done_chunk()], NOW),
            Ok(BatchOutcome::Completed)
        );
        assert_eq!(finalize_outcome(&running, &[chunk()], NOW), Err(None));
    }

    #[test]
    fn a_cancelled_batch_waits_for_claimed_chunks_only_within_the_grace() {
        let cancelling = Batch {
            cancelling_at: Some(NOW),
            ..batch(BatchStatus::Cancelling)
        };
        let held = Chunk {
            lease_token: Some("t".into()),
            lease_expires_at: Some(Timestamp(i64::MAX)),
            ..chunk()
        };
        assert_eq!(
            finalize_outcome(&cancelling, std::slice::from_ref(&held), NOW),
            Err(Some(FINALIZE_RECHECK))
        );
        let later = NOW.plus(CANCEL_GRACE);
        assert_eq!(
            finalize_outcome(&cancelling, &[held], later),
            Ok(BatchOutcome::Cancelled)
        );
        assert_eq!(
            finalize_outcome(&cancelling, &[chunk()], NOW),
            Ok(BatchOutcome::Cancelled)
        );
    }

    #[test]
    fn a_batch_past_its_window_expires_even_before_planning() {
        let past = Timestamp(10_000);
        assert_eq!(
            finalize_outcome(&batch(BatchStatus::InProgress), &[chunk()], past),
            Ok(BatchOutcome::Expired)
        );
        assert_eq!(
            finalize_outcome(&batch(BatchStatus::Validating), &[], past),
            Ok(BatchOutcome::Expired)
        );
        assert_eq!(
            finalize_outcome(&batch(BatchStatus::Validating), &[], NOW),
            Err(None)
        );
    }

    #[test]
    fn a_finalizing_batch_is_taken_over_only_after_its_lease_with_the_same_outcome() {
        let finalizing = Batch {
            finalize: Some(FinalizeLease {
                outcome: BatchOutcome::Expired,
                ..lease("old", Timestamp(2_000))
            }),
            ..batch(BatchStatus::Finalizing)
        };
        assert_eq!(
            finalize_outcome(&finalizing, &[], NOW),
            Err(Some(Duration::from_millis(1_000) + Duration::from_secs(1)))
        );
        assert_eq!(
            finalize_outcome(&finalizing, &[], Timestamp(2_000)),
            Ok(BatchOutcome::Expired)
        );
        for status in BatchStatus::TERMINAL {
            assert_eq!(finalize_outcome(&batch(status), &[], NOW), Err(None));
        }
    }

    #[test]
    fn cancel_moves_a_validating_or_running_batch_to_cancelling() {
        for status in BatchStatus::CANCELLABLE {
            let CancelDecision::Cancel(after) = cancel_decision(Some(batch(status)), NOW) else {
                panic!("{status:?} was not cancelled");
            };
            assert_eq!(
                (after.status, after.cancelling_at),
                (BatchStatus::Cancelling, Some(NOW))
            );
        }
    }

    #[test]
    fn cancel_of_a_finalizing_or_finished_batch_is_too_late_and_of_a_cancelled_one_accepted() {
        let answer = |status| cancel_decision(Some(batch(status)), NOW);
        for status in [BatchStatus::Cancelling, BatchStatus::Cancelled] {
            assert_eq!(
                answer(status),
                CancelDecision::Answer(BatchCancelOutcome::Accepted(batch(status)))
            );
        }
        for status in [
            BatchStatus::Finalizing,
            BatchStatus::Completed,
            BatchStatus::Failed,
            BatchStatus::Expired,
        ] {
            assert_eq!(
                answer(status),
                CancelDecision::Answer(BatchCancelOutcome::Finished(batch(status)))
            );
        }
        assert_eq!(
            cancel_decision(None, NOW),
            CancelDecision::Answer(BatchCancelOutcome::NotFound)
        );
    }

    #[test]
    fn a_repeated_cancel_while_the_cancel_is_finalized_is_accepted_again() {
        let finalizing = |outcome| Batch {
            finalize: Some(FinalizeLease {
                outcome,
                ..lease("t", NOW)
            }),
            ..batch(BatchStatus::Finalizing)
        };
        let cancelling = finalizing(BatchOutcome::Cancelled);
        assert_eq!(
            cancel_decision(Some(cancelling.clone()), NOW),
            CancelDecision::Answer(BatchCancelOutcome::Accepted(cancelling))
        );
        for outcome in [BatchOutcome::Completed, BatchOutcome::Expired] {
            assert_eq!(
                cancel_decision(Some(finalizing(outcome)), NOW),
                CancelDecision::Answer(BatchCancelOutcome::Finished(finalizing(outcome)))
            );
        }
    }
}

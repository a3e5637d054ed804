//! Unit tests of the batch state machine's decisions, one rule per test.

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
        native: None,
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
    chunk_claim(batch, chunk, &chunk_lease(), ClaimPurpose::Run, NOW).err()
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
        ClaimPurpose::Run,
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
fn a_finalize_claim_whose_own_write_landed_before_its_answer_was_lost_holds_that_lease() {
    // The claim's first try wrote lease "mine"; its answer never came and the retry reads the
    // batch finalizing under that very token, with the lease still live.
    let written = FinalizeLease {
        outcome: BatchOutcome::Completed,
        ..lease("mine", Timestamp(5_000))
    };
    let current = finalizing(batch(BatchStatus::InProgress), written.clone(), NOW);
    let retried = lease("mine", Timestamp(6_000));
    assert_eq!(finalize_lease(&current, &retried, NOW), Some(written));
    // Anyone else's claim still waits for that lease to end.
    assert_eq!(
        finalize_lease(&current, &lease("other", Timestamp(6_000)), NOW),
        None
    );
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
        finalize_outcome(&running, &[done_chunk()], false, NOW),
        Ok(BatchOutcome::Completed)
    );
    assert_eq!(
        finalize_outcome(&running, &[chunk()], false, NOW),
        Err(None)
    );
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
        finalize_outcome(&cancelling, std::slice::from_ref(&held), false, NOW),
        Err(Some(FINALIZE_RECHECK))
    );
    let later = NOW.plus(CANCEL_GRACE);
    assert_eq!(
        finalize_outcome(&cancelling, &[held], false, later),
        Ok(BatchOutcome::Cancelled)
    );
    assert_eq!(
        finalize_outcome(&cancelling, &[chunk()], false, NOW),
        Ok(BatchOutcome::Cancelled)
    );
}

#[test]
fn a_cancelled_batch_waits_for_live_native_groups_only_within_the_native_grace() {
    let cancelling = Batch {
        cancelling_at: Some(NOW),
        ..batch(BatchStatus::Cancelling)
    };
    assert_eq!(
        finalize_outcome(&cancelling, &[chunk()], true, NOW),
        Err(Some(NATIVE_RECHECK))
    );
    // A held chunk is waited for first, and more often.
    let held = Chunk {
        lease_token: Some("t".into()),
        lease_expires_at: Some(Timestamp(i64::MAX)),
        ..chunk()
    };
    assert_eq!(
        finalize_outcome(&cancelling, &[held], true, NOW),
        Err(Some(FINALIZE_RECHECK))
    );
    // A provider that never ends its cancel does not hold the batch past the grace.
    let last_wait = NOW
        .plus(NATIVE_CANCEL_GRACE)
        .minus(Duration::from_millis(1));
    assert_eq!(
        finalize_outcome(&cancelling, &[chunk()], true, last_wait),
        Err(Some(NATIVE_RECHECK))
    );
    assert_eq!(
        finalize_outcome(&cancelling, &[chunk()], true, NOW.plus(NATIVE_CANCEL_GRACE)),
        Ok(BatchOutcome::Cancelled)
    );
    // Native groups never hold back any other outcome.
    let running = Batch {
        chunks: 1,
        chunks_done: 1,
        ..batch(BatchStatus::InProgress)
    };
    assert_eq!(
        finalize_outcome(&running, &[done_chunk()], true, NOW),
        Ok(BatchOutcome::Completed)
    );
    assert_eq!(
        finalize_outcome(
            &batch(BatchStatus::InProgress),
            &[chunk()],
            true,
            Timestamp(10_000)
        ),
        Ok(BatchOutcome::Expired)
    );
}

#[test]
fn a_cancelling_batch_takes_a_claim_to_collect_native_lines_but_none_to_run_lines() {
    let claim = |status: BatchStatus, purpose: ClaimPurpose, now: Timestamp| {
        chunk_claim(
            Some(batch(status)),
            Some(chunk()),
            &chunk_lease(),
            purpose,
            now,
        )
        .is_ok()
    };
    assert!(claim(BatchStatus::Cancelling, ClaimPurpose::Collect, NOW));
    // Past the window too: the cancel's finalizer, not the expiry, owns a cancelling batch.
    assert!(claim(
        BatchStatus::Cancelling,
        ClaimPurpose::Collect,
        Timestamp(10_000)
    ));
    assert!(!claim(BatchStatus::Cancelling, ClaimPurpose::Run, NOW));
    assert!(claim(BatchStatus::InProgress, ClaimPurpose::Run, NOW));
    assert!(claim(BatchStatus::InProgress, ClaimPurpose::Collect, NOW));
    assert!(!claim(
        BatchStatus::InProgress,
        ClaimPurpose::Collect,
        Timestamp(10_000)
    ));
    for status in [BatchStatus::Finalizing, BatchStatus::Validating]
        .into_iter()
        .chain(BatchStatus::TERMINAL)
    {
        assert!(!claim(status, ClaimPurpose::Collect, NOW), "{status:?}");
    }
    // What a collect commits while cancelling is kept.
    assert_eq!(
        chunk_write_in(BatchStatus::Cancelling),
        ChunkWrite::Stopping
    );
}

#[test]
fn a_native_look_runs_while_the_batch_runs_winds_down_while_it_cancels_and_stops_otherwise() {
    assert_eq!(
        native_look(&batch(BatchStatus::InProgress), NOW),
        NativeLook::Run
    );
    assert_eq!(
        native_look(&batch(BatchStatus::Cancelling), NOW),
        NativeLook::WindDown
    );
    assert_eq!(
        native_look(&batch(BatchStatus::InProgress), Timestamp(10_000)),
        NativeLook::Stop
    );
    for status in BatchStatus::TERMINAL {
        assert_eq!(native_look(&batch(status), NOW), NativeLook::Stop);
    }
    assert_eq!(
        native_look(&batch(BatchStatus::Finalizing), NOW),
        NativeLook::Stop
    );
}

#[test]
fn a_chunk_whose_lines_left_are_all_native_waits_only_on_its_groups() {
    let with = |native: Option<&str>, done: &str| Chunk {
        plan: ChunkPlan {
            lines: 4,
            native: native.map(str::to_owned),
            ..chunk().plan
        },
        parts: vec![crate::batches::Part {
            key: "k".into(),
            lines: 0,
            completed: 0,
            failed: 0,
            usage: crate::batches::Usage::default(),
            done: done.into(),
        }],
        ..chunk()
    };
    assert!(waits_only_on_native(&with(Some("1,3"), "0,2")));
    assert!(
        !waits_only_on_native(&with(Some("1,3"), "0")),
        "a gateway line left"
    );
    assert!(
        !waits_only_on_native(&with(Some("1,3"), "0-3")),
        "nothing left"
    );
    assert!(
        !waits_only_on_native(&with(Some(""), "")),
        "no native lines"
    );
    assert!(!waits_only_on_native(&with(None, "0,2")), "not recorded");
    let finished = Chunk {
        done: true,
        ..with(Some("1,3"), "0,2")
    };
    assert!(!waits_only_on_native(&finished));
}

#[test]
fn only_chunks_recorded_without_native_lines_rule_out_native_groups() {
    let planned = |native: Option<&str>| Chunk {
        plan: ChunkPlan {
            native: native.map(str::to_owned),
            ..chunk().plan
        },
        ..chunk()
    };
    assert!(!may_have_native_lines(&[
        planned(Some("")),
        planned(Some(""))
    ]));
    assert!(may_have_native_lines(&[
        planned(Some("")),
        planned(Some("0-2"))
    ]));
    assert!(
        may_have_native_lines(&[planned(Some("")), planned(None)]),
        "a chunk planned before native lines were recorded may have some"
    );
    assert!(may_have_native_lines(&[]), "not planned yet");
}

#[test]
fn a_batch_past_its_window_expires_even_before_planning() {
    let past = Timestamp(10_000);
    assert_eq!(
        finalize_outcome(&batch(BatchStatus::InProgress), &[chunk()], false, past),
        Ok(BatchOutcome::Expired)
    );
    assert_eq!(
        finalize_outcome(&batch(BatchStatus::Validating), &[], false, past),
        Ok(BatchOutcome::Expired)
    );
    assert_eq!(
        finalize_outcome(&batch(BatchStatus::Validating), &[], false, NOW),
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
        finalize_outcome(&finalizing, &[], false, NOW),
        Err(Some(Duration::from_millis(1_000) + Duration::from_secs(1)))
    );
    assert_eq!(
        finalize_outcome(&finalizing, &[], false, Timestamp(2_000)),
        Ok(BatchOutcome::Expired)
    );
    for status in BatchStatus::TERMINAL {
        assert_eq!(finalize_outcome(&batch(status), &[], false, NOW), Err(None));
    }
}

#[test]
fn only_the_finalizer_holding_the_lease_renews_it_and_never_shortens_it() {
    let finalizing = Batch {
        finalize: Some(lease("f", Timestamp(2_000))),
        ..batch(BatchStatus::Finalizing)
    };
    let renewed = renewed_finalize(&finalizing, "f", Timestamp(9_000)).unwrap();
    assert_eq!(renewed.expires_at, Timestamp(9_000));
    assert_eq!(
        FinalizeLease {
            expires_at: Timestamp(2_000),
            ..renewed
        },
        lease("f", Timestamp(2_000)),
        "the outcome and file ids stay"
    );
    assert_eq!(
        renewed_finalize(&finalizing, "f", Timestamp(1_500))
            .unwrap()
            .expires_at,
        Timestamp(2_000)
    );
    assert_eq!(
        renewed_finalize(&finalizing, "other", Timestamp(9_000)),
        None
    );
    let ended = Batch {
        status: BatchStatus::Completed,
        ..finalizing
    };
    assert_eq!(renewed_finalize(&ended, "f", Timestamp(9_000)), None);
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

//! When a batch is ready to finalize, who holds the finalize lease, and its take-over and renewal.

use super::*;

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

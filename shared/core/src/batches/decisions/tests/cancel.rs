//! Cancel outcomes, and how long a cancelled batch waits for chunks still held.

use super::*;

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

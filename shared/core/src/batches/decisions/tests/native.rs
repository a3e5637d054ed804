//! Provider-native groups: what waits on them, and when their lines are looked at or collected.

use super::*;

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

//! Claims, parts and completion of one chunk, and which batch states take results.

use super::*;

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

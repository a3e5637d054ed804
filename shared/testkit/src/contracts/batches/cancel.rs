//! The `BatchStore` contract on cancel: a cancelling batch keeps its holders' finished lines
//! and a provider batch's collected ones, and takes no more once its finalizer claims it.

use super::*;

/// A cancelling batch takes no new claims to run lines, but its holders' finished lines still
/// land (they are paid for) and every write tells them to stop; a claim to collect a provider
/// batch's finished lines is still taken and its commit lands the same way; once the cancel's
/// finalizer claims the batch, nothing more lands and no claim is taken.
pub async fn a_cancelling_batch_keeps_its_holders_results_and_takes_no_more_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = planned_batch(&p, &ids, 2, HOUR).await;
    let now = p.clock.now();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    match p
        .batches
        .request_cancel(&batch.tenant, &batch.id, now)
        .await
        .unwrap()
    {
        BatchCancelOutcome::Accepted(b) => assert_eq!(b.status, BatchStatus::Cancelling),
        other => panic!("expected accepted, got {other:?}"),
    }
    assert!(matches!(
        p.batches
            .request_cancel(&batch.tenant, &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::Accepted(_)
    ));
    assert_eq!(
        p.batches
            .request_cancel(&tenant("beta"), &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::NotFound
    );
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("late", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "x", &part("stranger", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(claim(&p, &batch, 1, "b").await, ChunkClaim::Closed);
    assert!(matches!(
        claim_for(&p, &batch, 1, "n", ClaimPurpose::Collect).await,
        ChunkClaim::Claimed { .. }
    ));
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "n", &part("collected", 2, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Stopping
    );
    assert!(p.batches.release_chunk(&batch, 1, "n").await.unwrap());
    let chunks = p.batches.chunks(&batch).await.unwrap();
    assert!(
        chunks[0].is_claimed(now),
        "the claim stays until its holder lets go"
    );
    assert_eq!(chunks[0].cursor, 1, "the finished line was kept");
    let counted = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.counts.completed, 1 + 2);
    assert_eq!(chunks[1].cursor, 3, "the collected lines were kept");
    assert!(p.batches.release_chunk(&batch, 0, "a").await.unwrap());
    let finalize = FinalizeLease {
        outcome: BatchOutcome::Cancelled,
        ..finalize_lease(&ids, "f", now.plus(HOUR))
    };
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("after", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused,
        "nothing lands once the finalizer may have read the parts"
    );
    assert_eq!(
        claim_for(&p, &batch, 1, "m", ClaimPurpose::Collect).await,
        ChunkClaim::Closed
    );
}

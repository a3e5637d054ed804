//! The `BatchStore` contract on chunk claims: a claim fences checkpoints and renewals, counts
//! add up as parts land, a released chunk resumes from its cursor, and an expired batch takes
//! no claims.

use super::*;

pub async fn chunk_claims_fence_checkpoints_and_counts_add_up(p: Ports) {
    let ids = IdGenerator::new();
    let batch = planned_batch(&p, &ids, 2, HOUR).await;
    let now = p.clock.now();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    assert!(matches!(
        claim(&p, &batch, 0, "b").await,
        ChunkClaim::Busy { .. }
    ));
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "b", &part("p0", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p1", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p2", 5, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "b", until).await.unwrap(),
        ChunkWrite::Refused
    );
    let running = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.counts.completed, running.counts.failed),
        (9, 1),
        "counts rise as parts land"
    );
    assert_eq!(running.usage.total_tokens, 14);
    let chunk = &p.batches.chunks(&batch).await.unwrap()[0];
    assert_eq!(chunk.cursor, 10);
    assert_eq!(
        chunk
            .parts
            .iter()
            .map(|x| x.key.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2"]
    );
    assert!(!p.batches.complete_chunk(&batch, 0, "b").await.unwrap());
    assert!(p.batches.complete_chunk(&batch, 0, "a").await.unwrap());
    assert!(
        !p.batches.complete_chunk(&batch, 0, "a").await.unwrap(),
        "counted once"
    );
    assert_eq!(claim(&p, &batch, 0, "c").await, ChunkClaim::Done);
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.chunks_done, 1);

    // A released chunk is claimable at once, and resumes from its cursor.
    assert!(matches!(
        claim(&p, &batch, 1, "d").await,
        ChunkClaim::Claimed { .. }
    ));
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p3", 3, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert!(p.batches.release_chunk(&batch, 1, "d").await.unwrap());
    match claim(&p, &batch, 1, "e").await {
        ChunkClaim::Claimed { chunk, .. } => assert_eq!(chunk.cursor, 3),
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p4", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
}

pub async fn an_expired_batch_takes_no_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = planned_batch(&p, &ids, 1, Duration::from_secs(1)).await;
    p.clock.advance(Duration::from_millis(1500)).await;
    assert_eq!(claim(&p, &batch, 0, "late").await, ChunkClaim::Closed);
}

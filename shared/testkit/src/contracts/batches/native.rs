//! The `BatchStore` contract on native groups' progress: the provider's reported counts show
//! in `request_counts` while the batch runs, and its final counts alone once it ends.

use super::*;

pub async fn provider_counts_show_in_request_counts_until_the_batch_finishes(p: Ports) {
    let ids = IdGenerator::new();
    let batch = planned_batch(&p, &ids, 1, HOUR).await;
    let now = p.clock.now();
    assert!(matches!(
        claim(&p, &batch, 0, "t").await,
        ChunkClaim::Claimed { .. }
    ));
    p.batches
        .checkpoint(&batch, 0, "t", &part("p0", 2, 1), now.plus(HOUR), now)
        .await
        .unwrap();
    let reported = |completed, failed| RequestCounts {
        total: 6,
        completed,
        failed,
    };
    // Each group's latest report replaces its previous one and adds to the committed lines.
    assert!(
        p.batches
            .record_provider_counts(&batch, 0, &reported(1, 0))
            .await
            .unwrap()
    );
    assert!(
        p.batches
            .record_provider_counts(&batch, 1, &reported(2, 1))
            .await
            .unwrap()
    );
    assert!(
        p.batches
            .record_provider_counts(&batch, 0, &reported(3, 0))
            .await
            .unwrap()
    );
    let live = counts_of(&p, &batch).await;
    assert_eq!(
        (live.total, live.completed, live.failed),
        (10, 2 + 3 + 2, 1 + 1)
    );
    // Another tenant's batch of the same id is not this one.
    let stranger = BatchRef {
        tenant: tenant("beta"),
        id: batch.id.clone(),
    };
    assert!(
        !p.batches
            .record_provider_counts(&stranger, 0, &reported(1, 0))
            .await
            .unwrap()
    );
    // A finished batch shows its final counts alone and takes no more reports.
    let lease = finalize_lease(&ids, "f", now.plus(HOUR));
    p.batches
        .claim_finalize(&batch, &lease, now)
        .await
        .unwrap()
        .unwrap();
    let result = BatchResult {
        outcome: BatchOutcome::Completed,
        counts: reported(5, 1),
        usage: Usage::default(),
        usage_by_model: prism_core::pricing::UsageByModel::default(),
        output_file_id: Some(lease.output_file_id.clone()),
        error_file_id: None,
        counted: Vec::new(),
    };
    assert!(p.batches.finish(&batch, "f", &result, now).await.unwrap());
    assert_eq!(counts_of(&p, &batch).await, reported(5, 1));
    assert!(
        !p.batches
            .record_provider_counts(&batch, 0, &reported(6, 0))
            .await
            .unwrap()
    );
}

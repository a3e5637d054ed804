//! What the batch paths read of a batch's native groups: a cancel's finalizer and the
//! reconciler nothing for a batch whose chunks have no native lines, and a finalizer waiting on
//! a group only that its record is still there, however often it looks again.

use std::time::Duration;

use crate::batches::planned;
use crate::support::*;

/// Where the batch's native plan and group records are stored.
fn native_blobs(batch: &BatchRef) -> String {
    format!("batches/{}/{}/native/", batch.tenant, batch.id)
}

async fn cancel(world: &World, batch: &BatchRef) {
    let cancelling = cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelling.status, BatchStatus::Cancelling);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_gateway_batch_finalizes_without_reading_any_native_blob() {
    let world = World::new();
    let batch = planned(&world, 8).await;
    let (item, _) = world.deliver_next().await.unwrap();
    assert!(matches!(item, WorkItem::RunChunk { .. }), "{item:?}");
    cancel(&world, &batch).await;
    // The cancel itself wakes whatever groups the batch has; the finalizer's looks read none.
    let at_cancel = world.blobs.reads(&native_blobs(&batch)).len();
    world.drain().await;

    assert_eq!(world.batch(&batch).await.status, BatchStatus::Cancelled);
    assert_eq!(
        world.blobs.reads(&native_blobs(&batch))[at_cancel..],
        [],
        "the chunks say the batch has no native lines"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancel_waiting_on_native_groups_probes_their_records_and_never_reads_them_whole() {
    let world = World::new();
    world.upstream.route_batches_natively("native");
    let batch = planned(&world, 8).await;
    cancel(&world, &batch).await;
    // Group records are `native/00000`, ...; the plan is `native/plan`.
    let records = format!("{}0", native_blobs(&batch));
    let at_cancel = world.blobs.reads(&records).len();
    assert!(
        !world.blobs.keys(&records).is_empty(),
        "no look has run: the group waits with its record"
    );

    for _ in 0..3 {
        assert_eq!(
            try_finalize(&world.deps, &batch).await.unwrap(),
            QueueAction::RetryAfter(NATIVE_RECHECK)
        );
        world.advance(NATIVE_RECHECK).await;
    }
    let looked = world.blobs.reads(&records)[at_cancel..].to_vec();
    assert_eq!(looked.len(), 3, "one look at the record per recheck");
    assert!(
        looked
            .iter()
            .all(|read| matches!(read, BlobRead::Range(_, 0, 1))),
        "a waiting finalizer needs only to know the record is there: {looked:?}"
    );

    // A group's look deletes its record once its lines are in; then the cancel ends.
    for key in world.blobs.keys(&records) {
        world.blobs.delete(&key).await.unwrap();
    }
    assert_eq!(
        try_finalize(&world.deps, &batch).await.unwrap(),
        QueueAction::Ack
    );
    assert_eq!(world.batch(&batch).await.status, BatchStatus::Cancelled);
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_requeues_an_idle_gateway_batch_without_reading_any_native_blob() {
    let world = World::new();
    let batch = planned(&world, 8).await;
    // The chunk's message is lost (taken and acknowledged by a processor that then died): only
    // the reconciler sends it again.
    let lost = world.queue.receive(1, VISIBILITY).await.unwrap();
    assert!(
        matches!(
            lost[..],
            [Delivery {
                item: WorkItem::RunChunk { .. },
                ..
            }]
        ),
        "{lost:?}"
    );
    world.queue.ack(&lost[0].receipt).await.unwrap();
    let before = world.blobs.reads(&native_blobs(&batch)).len();

    world
        .advance(world.deps.work_policy.stranded_after + Duration::from_secs(1))
        .await;
    let report = reconcile(&world.deps).await.unwrap();
    assert_eq!(report.batches, 1);

    assert_eq!(
        world.blobs.reads(&native_blobs(&batch))[before..],
        [],
        "the chunks say the batch has no native lines"
    );
    world.drain().await;
    assert_eq!(world.batch(&batch).await.status, BatchStatus::Completed);
}

//! The `WorkQueue` contract: at-least-once delivery, visibility, delays.

use super::*;

pub async fn queue_delivers_at_least_once_with_visibility(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let item = WorkItem::Job(job.job_ref());
    p.queue.enqueue(&item, Duration::ZERO).await.unwrap();
    let visibility = Duration::from_secs(2);
    let first = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].item.clone(), first[0].receive_count),
        (item.clone(), 1)
    );
    assert!(
        p.queue.receive(10, visibility).await.unwrap().is_empty(),
        "hidden while in flight"
    );

    p.clock
        .advance(visibility + Duration::from_millis(500))
        .await;
    let second = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].receive_count, 2);
    p.queue
        .extend(&second[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let third = p.queue.receive(10, visibility).await.unwrap();
    assert_eq!(third.len(), 1, "extend(0) makes it visible at once");
    p.queue.ack(&third[0].receipt).await.unwrap();
    p.queue.ack(&first[0].receipt).await.unwrap(); // a stale receipt is not an error
    p.clock
        .advance(visibility + Duration::from_millis(500))
        .await;
    assert!(
        p.queue.receive(10, visibility).await.unwrap().is_empty(),
        "acknowledged for good"
    );
}

pub async fn delayed_enqueue_is_invisible_until_due(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    p.queue
        .enqueue(&WorkItem::Job(job.job_ref()), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(p.queue.receive(10, HOUR).await.unwrap().is_empty());
    p.clock.advance(Duration::from_millis(2500)).await;
    assert_eq!(p.queue.receive(10, HOUR).await.unwrap().len(), 1);
}

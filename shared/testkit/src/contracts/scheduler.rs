//! The `Scheduler` contract: a scheduled item is delivered at its time, once, and never after
//! it is unscheduled.

use super::*;

pub async fn scheduler_delivers_at_its_time_once_and_never_after_unschedule(p: Ports) {
    let ids = IdGenerator::new();
    let kept = new_job(&p, &ids, "alpha").await;
    let dropped = new_job(&p, &ids, "alpha").await;
    let at = p.clock.now().plus(Duration::from_secs(20 * 60));
    let (kept, dropped) = (
        WorkItem::Job(kept.job_ref()),
        WorkItem::Job(dropped.job_ref()),
    );
    for item in [&kept, &kept, &dropped] {
        // Scheduling the same item twice (a retried call) still delivers it once.
        p.scheduler.schedule(item, at).await.unwrap();
    }
    assert!(
        p.queue.receive(10, HOUR).await.unwrap().is_empty(),
        "not yet due"
    );
    p.scheduler.unschedule(&dropped).await.unwrap();
    p.scheduler.unschedule(&dropped).await.unwrap(); // nothing left to drop is not an error
    p.schedules.pass(Duration::from_secs(21 * 60)).await;
    let delivered = p.queue.receive(10, HOUR).await.unwrap();
    assert_eq!(
        delivered.iter().map(|d| d.item.clone()).collect::<Vec<_>>(),
        vec![kept]
    );
}

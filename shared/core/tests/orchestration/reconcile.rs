//! The reconciler: work whose trigger was lost or whose worker died is triggered again, and
//! what outlived its retention is purged.

use std::time::Duration;

use crate::support::*;

#[tokio::test(start_paused = true)]
async fn the_reconciler_requeues_a_job_whose_trigger_was_lost() {
    let world = World::new();
    world.queue.refuse_enqueues(1);
    let job = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("lost"),
        None,
    )
    .await
    .expect("a lost trigger does not fail the submit")
    .job;
    assert!(world.queue.items().is_empty());

    let early = reconcile(&world.deps).await.unwrap();
    assert_eq!(early.retriggered, 0, "a fresh job is not stranded yet");
    world
        .advance(world.deps.work_policy.stranded_after + Duration::from_secs(1))
        .await;
    let report = reconcile(&world.deps).await.unwrap();
    assert_eq!(report.retriggered, 1);
    world.drain().await;

    assert_eq!(world.job(&job).await.status, JobStatus::Completed);
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_requeues_a_job_whose_worker_died_once_its_lease_ends() {
    let world = World::new();
    world
        .upstream
        .script([Reply::Hang(Hang::new(), Box::new(Reply::Echo))]);
    let job = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("crash"),
        None,
    )
    .await
    .unwrap()
    .job;
    let delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    let deps = world.deps.clone();
    let worker = tokio::spawn(async move { handle_delivery(&deps, &delivery, None).await });
    world.upstream.wait_for_calls(1).await;
    worker.abort();
    let (_, lease_until) = world.jobs.lease_of(&job.job_ref());
    let lease_until = lease_until.expect("the dead worker's lease is still on the job");

    assert_eq!(
        reconcile(&world.deps).await.unwrap().retriggered,
        0,
        "lease still live"
    );
    let past = world.now().until(lease_until) + world.deps.work_policy.stranded_after;
    world.advance(past + Duration::from_secs(1)).await;
    assert_eq!(reconcile(&world.deps).await.unwrap().retriggered, 1);
    world.drain().await;

    let done = world.job(&job).await;
    assert_eq!((done.status, done.attempts), (JobStatus::Completed, 2));
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_purges_jobs_past_their_retention() {
    let world = World::new();
    let job = submit_async_job(
        &world.deps,
        &tenant(),
        prism_core::ApiEndpoint::ChatCompletions,
        chat("old"),
        None,
    )
    .await
    .unwrap()
    .job;
    world.drain().await;
    assert_eq!(reconcile(&world.deps).await.unwrap().purged, 0);

    world.advance(world.deps.job_policy.retention).await;
    let report = reconcile(&world.deps).await.unwrap();

    assert_eq!(report.purged, 1);
    let gone = get_job(&world.deps, &tenant(), JobKind::Async, job.id.as_str()).await;
    assert!(matches!(gone, Err(ServiceError::NotFound { .. })));
}

//! The `JobStore` contract on scheduled jobs: a claim waits for one to fall due, and they list
//! apart from async jobs with their metadata.

use super::*;

/// A scheduled job stored without draining any delivery (its first one waits for its time).
async fn new_scheduled_job(p: &Ports, ids: &IdGenerator, owner: &str, due: Timestamp) -> NewJob {
    let now = p.clock.now();
    let job = NewJob {
        id: ids.scheduled_job_id(now),
        tenant: tenant(owner),
        kind: JobKind::Scheduled,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: "gpt-contract".into(),
        request: Bytes::from_static(br#"{"model":"gpt-contract","messages":[]}"#),
        created_at: now,
        scheduled_at: Some(due),
        scheduled_job_id: None,
        metadata: Some([("team".to_owned(), "search".to_owned())].into()),
    };
    assert!(matches!(
        p.jobs.create(&job, None).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
    job
}

pub async fn claim_waits_for_a_scheduled_job_to_fall_due(p: Ports) {
    let ids = IdGenerator::new();
    let due = p.clock.now().plus(Duration::from_secs(2));
    let job = new_scheduled_job(&p, &ids, "alpha", due).await;
    let now = p.clock.now();
    assert_eq!(
        p.jobs
            .claim(&job.job_ref(), &lease("early", now.plus(HOUR)), now)
            .await
            .unwrap(),
        ClaimOutcome::NotDue { due_at: due }
    );
    assert!(
        !p.jobs
            .stranded(now, 10)
            .await
            .unwrap()
            .contains(&job.job_ref()),
        "a job not yet due is not stranded"
    );
    let stored = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.status, stored.attempts, stored.started_at),
        (JobStatus::Pending, 0, None),
        "a refused claim leaves no trace"
    );
    p.clock.advance(Duration::from_millis(2500)).await;
    claimed(&p, &job.job_ref(), "on-time").await;
}

pub async fn scheduled_jobs_list_apart_from_async_ones_with_their_metadata(p: Ports) {
    let ids = IdGenerator::new();
    let plain = new_job(&p, &ids, "alpha").await;
    let due = p.clock.now().plus(HOUR);
    let scheduled = new_scheduled_job(&p, &ids, "alpha", due).await;
    let now = p.clock.now();
    let asyncs = p
        .jobs
        .list(&tenant("alpha"), JobKind::Async, &page(10, None, None), now)
        .await
        .unwrap();
    assert_eq!(
        asyncs
            .items
            .iter()
            .map(|j| j.id.clone())
            .collect::<Vec<_>>(),
        vec![plain.id]
    );
    let listed = p
        .jobs
        .list(
            &tenant("alpha"),
            JobKind::Scheduled,
            &page(10, None, None),
            now,
        )
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    let got = &listed.items[0];
    assert_eq!(got.id, scheduled.id);
    assert_eq!(got.kind, JobKind::Scheduled);
    assert_eq!(got.scheduled_at, Some(due));
    assert_eq!(got.metadata, scheduled.metadata);
    let fetched = p
        .jobs
        .get(&tenant("alpha"), &scheduled.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&fetched, got);
}

//! The `JobStore` contract: create and idempotency, the endpoint a job keeps, and listing; the
//! helpers every topic of it shares. Claims and leases, how jobs end and scheduled jobs are
//! submodules of their own.

use super::*;

mod finishing;
mod leases;
mod scheduled;

pub use finishing::*;
pub use leases::*;
pub use scheduled::*;

fn page(limit: usize, after: Option<JobId>, status: Option<JobStatus>) -> ListQuery {
    ListQuery {
        scheduled_job_id: None,
        limit,
        after,
        status,
    }
}

async fn claimed(p: &Ports, id: &JobRef, token: &str) {
    let now = p.clock.now();
    match p
        .jobs
        .claim(id, &lease(token, now.plus(HOUR)), now)
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed(job) => assert_eq!(job.status, JobStatus::Running),
        other => panic!("expected a claim, got {other:?}"),
    }
}

pub async fn created_job_is_pending_and_visible_to_its_tenant_only(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let now = p.clock.now();
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Pending);
    assert_eq!(got.model, "gpt-contract");
    assert_eq!(got.attempts, 0);
    assert!(
        p.jobs
            .get(&tenant("beta"), &job.id, now)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        p.jobs.request_body(&job.job_ref()).await.unwrap().unwrap(),
        job.request
    );
}

pub async fn a_job_keeps_the_endpoint_it_calls_through_claim_and_finish(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let job = NewJob {
        id: ids.job_id(now),
        tenant: tenant("alpha"),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::Embeddings,
        model: "e".into(),
        request: Bytes::from_static(br#"{"model":"e","input":"x"}"#),
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    p.jobs.create(&job, None).await.unwrap();
    let id = job.job_ref();
    let claimed = match p
        .jobs
        .claim(&id, &lease("t", now.plus(HOUR)), now)
        .await
        .unwrap()
    {
        ClaimOutcome::Claimed(claimed) => claimed,
        other => panic!("expected a claim, got {other:?}"),
    };
    assert_eq!(claimed.endpoint, prism_core::ApiEndpoint::Embeddings);
    let result = r#"{"object":"list","data":[]}"#.to_owned();
    p.jobs
        .finish(
            &id,
            "t",
            &Finish::Completed {
                result,
                counted: None,
            },
            now,
            now.plus(HOUR),
        )
        .await
        .unwrap();
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.endpoint, prism_core::ApiEndpoint::Embeddings);
    assert_eq!(got.status, JobStatus::Completed);
}

pub async fn idempotency_claim_replays_within_its_tenant(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let claim = |hash: &str| IdempotencyClaim {
        key: "key-1".into(),
        body_hash: hash.into(),
        expires_at: now.plus(HOUR),
    };
    let mut job = NewJob {
        id: ids.job_id(now),
        tenant: tenant("alpha"),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: "m".into(),
        request: Bytes::from_static(b"{}"),
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    let first = job.id.clone();
    assert!(matches!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
    job.id = ids.job_id(now);
    assert_eq!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Replayed {
            job_id: first.clone(),
            same_body: true
        }
    );
    assert_eq!(
        p.jobs.create(&job, Some(&claim("h2"))).await.unwrap(),
        CreateOutcome::Replayed {
            job_id: first.clone(),
            same_body: false
        }
    );
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, now)
            .await
            .unwrap()
            .is_none(),
        "a replay writes no job"
    );
    job.tenant = tenant("beta");
    assert!(matches!(
        p.jobs.create(&job, Some(&claim("h1"))).await.unwrap(),
        CreateOutcome::Created { .. }
    ));
}

pub async fn list_is_newest_first_with_cursor_and_filter(p: Ports) {
    let ids = IdGenerator::new();
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(new_job(&p, &ids, "alpha").await.id);
        p.clock.advance(Duration::from_millis(5)).await;
    }
    new_job(&p, &ids, "beta").await;
    claimed(
        &p,
        &JobRef {
            tenant: tenant("alpha"),
            id: made[1].clone(),
        },
        "t",
    )
    .await;
    let now = p.clock.now();
    let alpha = tenant("alpha");
    let first = p
        .jobs
        .list(&alpha, JobKind::Async, &page(3, None, None), now)
        .await
        .unwrap();
    let got: Vec<_> = first.items.iter().map(|j| j.id.clone()).collect();
    assert_eq!(got, vec![made[4].clone(), made[3].clone(), made[2].clone()]);
    assert!(first.has_more);
    let second = p
        .jobs
        .list(
            &alpha,
            JobKind::Async,
            &page(3, Some(made[2].clone()), None),
            now,
        )
        .await
        .unwrap();
    let got: Vec<_> = second.items.iter().map(|j| j.id.clone()).collect();
    assert_eq!(got, vec![made[1].clone(), made[0].clone()]);
    assert!(!second.has_more);
    let running = p
        .jobs
        .list(
            &alpha,
            JobKind::Async,
            &page(10, None, Some(JobStatus::Running)),
            now,
        )
        .await
        .unwrap();
    assert_eq!(running.items.len(), 1);
    assert_eq!(running.items[0].id, made[1]);
}

//! The `JobStore` contract: create and idempotency, claims and leases, retention, cancel,
//! dead letters, listing, the reconciler's query and scheduled jobs.

use prism_core::usage::counters::{Day, UsageCount};

use super::*;

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

pub async fn a_live_lease_keeps_other_claimants_out_and_fences_stale_writes(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let now = p.clock.now();
    let short = Duration::from_secs(2);
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("first", now.plus(short)), now).await.unwrap(),
        ClaimOutcome::Claimed(j) if j.attempts == 1 && j.started_at.is_some()
    ));
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("second", now.plus(short)), now).await.unwrap(),
        ClaimOutcome::Busy { lease_expires_at } if lease_expires_at == now.plus(short)
    ));
    assert!(p.jobs.still_holds(&job.job_ref(), "first").await.unwrap());

    p.clock.advance(short + Duration::from_millis(500)).await;
    let later = p.clock.now();
    assert!(matches!(
        p.jobs.claim(&job.job_ref(), &lease("second", later.plus(short)), later).await.unwrap(),
        ClaimOutcome::Claimed(j) if j.attempts == 2
    ));
    let done = Finish::Completed {
        result: r#"{"id":"x"}"#.into(),
        counted: None,
    };
    assert!(
        !p.jobs
            .finish(&job.job_ref(), "first", &done, later, later.plus(HOUR))
            .await
            .unwrap(),
        "stale token"
    );
    assert!(
        !p.jobs
            .begin_attempt(&job.job_ref(), "first", 3, later.plus(HOUR))
            .await
            .unwrap()
    );
    assert!(!p.jobs.still_holds(&job.job_ref(), "first").await.unwrap());
    // Sent twice, as the SDK does when the first answer is lost: counted once.
    for _ in 0..2 {
        assert!(
            p.jobs
                .begin_attempt(&job.job_ref(), "second", 3, later.plus(HOUR))
                .await
                .unwrap()
        );
    }
    assert!(
        p.jobs
            .finish(&job.job_ref(), "second", &done, later, later.plus(HOUR))
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, JobStatus::Completed);
    assert_eq!(got.attempts, 3);
    assert_eq!(got.result.as_deref(), Some(r#"{"id":"x"}"#));
    assert!(matches!(
        p.jobs
            .claim(&job.job_ref(), &lease("third", later.plus(short)), later)
            .await
            .unwrap(),
        ClaimOutcome::Terminal(_)
    ));
}

pub async fn a_released_lease_can_be_claimed_at_once(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    claimed(&p, &job.job_ref(), "first").await;
    let retry_at = p.clock.now().plus(Duration::from_secs(60));
    assert!(
        p.jobs
            .release(&job.job_ref(), "first", retry_at)
            .await
            .unwrap()
    );
    assert!(
        !p.jobs
            .release(&job.job_ref(), "first", retry_at)
            .await
            .unwrap()
    );
    claimed(&p, &job.job_ref(), "second").await;
}

pub async fn finished_jobs_expire_at_their_retention(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    claimed(&p, &job.job_ref(), "t").await;
    let now = p.clock.now();
    let error = JobError::new("boom", "server_error", Some("x"));
    let failed = Finish::Failed {
        error: error.clone(),
    };
    assert!(
        p.jobs
            .finish(
                &job.job_ref(),
                "t",
                &failed,
                now,
                now.plus(Duration::from_secs(60))
            )
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &job.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.status, got.error), (JobStatus::Failed, Some(error)));
    assert_eq!(got.expires_at, Some(now.plus(Duration::from_secs(60))));
    let after = now.plus(Duration::from_secs(61));
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, after)
            .await
            .unwrap()
            .is_none(),
        "expired reads as absent"
    );
    assert!(matches!(
        p.jobs
            .claim(&job.job_ref(), &lease("x", after.plus(HOUR)), after)
            .await
            .unwrap(),
        ClaimOutcome::Missing
    ));
    // Purging is the adapter's business (DynamoDB's TTL does it itself); the job stays gone.
    p.jobs.purge_expired(after, 100).await.unwrap();
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, after)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn cancel_moves_unfinished_jobs_once_and_refuses_finished_ones(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let pending = new_job(&p, &ids, "alpha").await;
    let running = new_job(&p, &ids, "alpha").await;
    let done = new_job(&p, &ids, "alpha").await;
    claimed(&p, &running.job_ref(), "r").await;
    claimed(&p, &done.job_ref(), "d").await;
    let ok = Finish::Completed {
        result: "{}".into(),
        counted: None,
    };
    assert!(
        p.jobs
            .finish(&done.job_ref(), "d", &ok, now, now.plus(HOUR))
            .await
            .unwrap()
    );

    let alpha = tenant("alpha");
    assert!(matches!(
        p.jobs
            .cancel(&tenant("beta"), &pending.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::NotFound
    ));
    assert!(
        matches!(p.jobs.cancel(&alpha, &pending.id, now, now.plus(HOUR)).await.unwrap(), CancelOutcome::Cancelled(j) if j.status == JobStatus::Cancelled)
    );
    assert!(matches!(
        p.jobs
            .cancel(&alpha, &pending.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::AlreadyCancelled(_)
    ));
    assert!(matches!(
        p.jobs
            .cancel(&alpha, &running.id, now, now.plus(HOUR))
            .await
            .unwrap(),
        CancelOutcome::Cancelled(_)
    ));
    assert!(
        !p.jobs.still_holds(&running.job_ref(), "r").await.unwrap(),
        "the worker sees the cancel"
    );
    assert!(
        !p.jobs
            .finish(&running.job_ref(), "r", &ok, now, now.plus(HOUR))
            .await
            .unwrap(),
        "a late result is discarded"
    );
    assert!(
        matches!(p.jobs.cancel(&alpha, &done.id, now, now.plus(HOUR)).await.unwrap(), CancelOutcome::Finished(j) if j.status == JobStatus::Completed)
    );
}

pub async fn dead_letter_fails_only_unfinished_jobs(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let pending = new_job(&p, &ids, "alpha").await;
    let error = JobError::processing_failed();
    assert!(
        p.jobs
            .fail_unfinished(&pending.job_ref(), &error, now, now.plus(HOUR))
            .await
            .unwrap()
    );
    assert!(
        !p.jobs
            .fail_unfinished(&pending.job_ref(), &error, now, now.plus(HOUR))
            .await
            .unwrap()
    );
    let got = p
        .jobs
        .get(&tenant("alpha"), &pending.id, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got.error.unwrap().code.as_deref(),
        Some("processing_failed")
    );
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

pub async fn reconciler_finds_old_pending_jobs_and_ended_leases(p: Ports) {
    let ids = IdGenerator::new();
    let start = p.clock.now();
    let lost = new_job(&p, &ids, "alpha").await;
    let crashed = new_job(&p, &ids, "alpha").await;
    let waiting = new_job(&p, &ids, "alpha").await;
    let finished = new_job(&p, &ids, "alpha").await;
    let short = lease("gone", start.plus(Duration::from_secs(1)));
    assert!(matches!(
        p.jobs
            .claim(&crashed.job_ref(), &short, start)
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    claimed(&p, &waiting.job_ref(), "w").await;
    let retry_at = start.plus(Duration::from_secs(4));
    assert!(
        p.jobs
            .release(&waiting.job_ref(), "w", retry_at)
            .await
            .unwrap()
    );
    claimed(&p, &finished.job_ref(), "f").await;
    let ok = Finish::Completed {
        result: "{}".into(),
        counted: None,
    };
    assert!(
        p.jobs
            .finish(&finished.job_ref(), "f", &ok, start, start.plus(HOUR))
            .await
            .unwrap()
    );

    assert!(
        p.jobs
            .stranded(start.minus(HOUR), 10)
            .await
            .unwrap()
            .is_empty(),
        "nothing is old yet"
    );
    p.clock.advance(Duration::from_secs(2)).await;
    let mut found = p
        .jobs
        .stranded(p.clock.now().minus(Duration::from_millis(500)), 10)
        .await
        .unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![lost.job_ref(), crashed.job_ref()],
        "a released job waits for its retry time"
    );
    p.clock.advance(Duration::from_secs(3)).await;
    let found = p
        .jobs
        .stranded(p.clock.now().minus(Duration::from_millis(500)), 10)
        .await
        .unwrap();
    assert!(found.contains(&waiting.job_ref()));
    assert!(!found.contains(&finished.job_ref()));
}

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

/// The counts of `counts` summed per day, kind, model and tier: (requests, total tokens).
fn summed(
    counts: &[UsageCount],
) -> std::collections::BTreeMap<(i64, &'static str, String, &'static str), (u64, u64)> {
    let mut sum = std::collections::BTreeMap::new();
    for c in counts {
        let entry = sum
            .entry((c.day.0, c.kind.as_str(), c.model.clone(), c.tier.as_str()))
            .or_insert((0, 0));
        entry.0 += c.requests;
        entry.1 += c.usage.total_tokens;
    }
    sum
}

pub async fn a_finish_counts_its_usage_once_and_the_purge_keeps_the_count(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await;
    let failed_job = new_job(&p, &ids, "alpha").await;
    claimed(&p, &job.job_ref(), "t").await;
    claimed(&p, &failed_job.job_ref(), "t").await;
    let now = p.clock.now();
    let today = Day::of(now);
    let body = r#"{"model":"gpt-contract-1","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
    let done = Finish::Completed {
        result: body.into(),
        counted: UsageCount::of_completed_job(JobKind::Async, "gpt-contract", body, now),
    };
    let short = Duration::from_secs(60);
    assert!(
        p.jobs
            .finish(&job.job_ref(), "t", &done, now, now.plus(short))
            .await
            .unwrap()
    );
    // A redelivered finish is refused, and its count with it.
    assert!(
        !p.jobs
            .finish(&job.job_ref(), "t", &done, now, now.plus(short))
            .await
            .unwrap()
    );
    let failed = Finish::Failed {
        error: JobError::new("boom", "server_error", None),
    };
    assert!(
        p.jobs
            .finish(&failed_job.job_ref(), "t", &failed, now, now.plus(short))
            .await
            .unwrap()
    );
    let expected = std::collections::BTreeMap::from([(
        (today.0, "async", "gpt-contract-1".to_owned(), "standard"),
        (1, 7),
    )]);
    let read = |tenant_name: &'static str, from: Day, to: Day| {
        let jobs = std::sync::Arc::clone(&p.jobs);
        async move {
            jobs.usage_counts(&tenant(tenant_name), from, to)
                .await
                .unwrap()
        }
    };
    assert_eq!(summed(&read("alpha", today, today).await), expected);
    assert!(
        read("beta", today, today).await.is_empty(),
        "another tenant's"
    );
    assert!(
        read("alpha", Day(today.0 + 1), Day(today.0 + 2))
            .await
            .is_empty(),
        "days after"
    );
    // Past the jobs' retention and purged, the count stays.
    let after = now.plus(short * 2);
    p.jobs.purge_expired(after, 100).await.unwrap();
    assert!(
        p.jobs
            .get(&tenant("alpha"), &job.id, after)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        summed(&read("alpha", Day(today.0 - 1), today).await),
        expected
    );
}

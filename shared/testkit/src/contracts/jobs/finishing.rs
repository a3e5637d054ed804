//! The `JobStore` contract on how jobs end: retention after a finish, cancel, dead letters, and
//! the usage a finish counts (once, and kept past the purge).

use prism_core::usage::counters::{Day, UsageCount};

use super::*;

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

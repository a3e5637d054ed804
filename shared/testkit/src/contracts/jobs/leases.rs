//! The `JobStore` contract on claims and leases: a live lease keeps other claimants out and
//! fences stale writes, a released one is claimable at once, and the reconciler's query finds old
//! pending jobs and ended leases.

use super::*;

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

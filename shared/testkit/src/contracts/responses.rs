//! The `JobStore` contract for a streamed background response's recorded events: appended only
//! under the worker's lease, read back in order after any sequence number, and large events
//! whole. (A worker writes each sequence number once, so what a repeat does is not asserted.)

use prism_core::responses::events::RecordedEvent;

use super::*;

fn event(seq: u64, text: &str) -> RecordedEvent {
    RecordedEvent {
        sequence_number: seq,
        text: format!("event: e\ndata: {{\"sequence_number\":{seq},\"t\":\"{text}\"}}"),
    }
}

pub async fn response_events_append_under_the_lease_and_read_back_in_order(p: Ports) {
    let ids = IdGenerator::new();
    let job = new_job(&p, &ids, "alpha").await.job_ref();
    assert!(
        p.jobs
            .events_after(&job, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Not running under this token: refused, nothing recorded.
    assert!(
        !p.jobs
            .append_events(&job, "tok", &[event(0, "x")])
            .await
            .unwrap()
    );
    let now = p.clock.now();
    let ClaimOutcome::Claimed(_) = p
        .jobs
        .claim(&job, &lease("tok", now.plus(HOUR)), now)
        .await
        .unwrap()
    else {
        panic!("expected a claim");
    };
    let first: Vec<RecordedEvent> = (0..3).map(|i| event(i, "a")).collect();
    assert!(p.jobs.append_events(&job, "tok", &first).await.unwrap());
    // A big event (past DynamoDB's item size once escaped) comes back whole.
    let big = event(3, &"b".repeat(500 * 1024));
    let second = vec![big.clone()];
    assert!(p.jobs.append_events(&job, "tok", &second).await.unwrap());
    // Another worker's token is refused.
    assert!(
        !p.jobs
            .append_events(&job, "other", &[event(4, "z")])
            .await
            .unwrap()
    );

    let all = p.jobs.events_after(&job, None, 100).await.unwrap();
    let mut expected = first.clone();
    expected.push(big.clone());
    assert!(
        all == expected,
        "recorded events differ from the appended ones"
    );
    assert_eq!(
        p.jobs.events_after(&job, Some(1), 100).await.unwrap(),
        vec![first[2].clone(), big]
    );
    assert_eq!(
        p.jobs.events_after(&job, None, 2).await.unwrap(),
        first[..2].to_vec()
    );
    assert!(
        p.jobs
            .events_after(&job, Some(3), 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Once cancelled, the lease no longer records.
    let cancelled = p
        .jobs
        .cancel(&job.tenant, &job.id, now, now.plus(HOUR))
        .await
        .unwrap();
    assert!(matches!(cancelled, CancelOutcome::Cancelled(_)));
    assert!(
        !p.jobs
            .append_events(&job, "tok", &[event(9, "late")])
            .await
            .unwrap()
    );
}

//! Recurring schedules: a firing makes one run however often it is delivered, the run runs
//! like any async job, and a late firing catches up with one run.

use std::time::Duration;

use prism_core::list::ListQuery;
use prism_core::recurring::RecurringStatus;
use prism_core::recurring::fire::fire_schedule;
use prism_core::recurring::service::{create_recurring, delete_recurring, list_runs};

use crate::support::*;

fn every_minute() -> Vec<u8> {
    let request: serde_json::Value = serde_json::from_slice(&chat("tick")).unwrap();
    serde_json::json!({"schedule": {"cron": "* * * * *", "timezone": "UTC"}, "request": request})
        .to_string()
        .into_bytes()
}

fn all_runs() -> ListQuery {
    ListQuery::parse(None, None, None).unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_firing_delivered_three_times_makes_one_run_that_completes() {
    let world = World::new();
    let created = create_recurring(&world.deps, &tenant(), &every_minute(), None)
        .await
        .unwrap()
        .schedule;
    let at = created.next_run_at.unwrap();
    world.advance(world.now().until(at)).await;
    let schedule = created.recurring_ref();
    for _ in 0..3 {
        assert_eq!(
            fire_schedule(&world.deps, &schedule, at).await.unwrap(),
            QueueAction::Ack
        );
    }
    world.drain().await;
    let runs = list_runs(&world.deps, &tenant(), created.id.as_str(), &all_runs())
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, JobStatus::Completed);
    assert_eq!(runs[0].scheduled_job_id.as_ref(), Some(&created.id));
    assert_eq!(world.upstream.calls().len(), 1);
    let stored = world
        .deps
        .recurring
        .get(&tenant(), &created.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.run_count, stored.last_run_at), (1, Some(at)));
    assert_eq!(stored.next_run_at, Some(at.plus(Duration::from_secs(60))));
}

#[tokio::test(start_paused = true)]
async fn a_firing_after_a_long_outage_makes_one_run_and_delete_stops_the_rest() {
    let world = World::new();
    let created = create_recurring(&world.deps, &tenant(), &every_minute(), None)
        .await
        .unwrap()
        .schedule;
    let first = created.next_run_at.unwrap();
    // Down for ten fire times: each delivery arrives now; one run, for the latest.
    world.advance(Duration::from_secs(600)).await;
    let schedule = created.recurring_ref();
    for late in 0..10 {
        let at = first.plus(Duration::from_secs(60 * late));
        fire_schedule(&world.deps, &schedule, at).await.unwrap();
    }
    world.drain().await;
    let runs = list_runs(&world.deps, &tenant(), created.id.as_str(), &all_runs())
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 1);
    let deleted = delete_recurring(&world.deps, &tenant(), created.id.as_str(), false)
        .await
        .unwrap();
    assert_eq!(deleted.status, RecurringStatus::Cancelled);
    world.advance(Duration::from_secs(120)).await;
    let next = first.plus(Duration::from_secs(660));
    fire_schedule(&world.deps, &schedule, next).await.unwrap();
    world.drain().await;
    let runs = list_runs(&world.deps, &tenant(), created.id.as_str(), &all_runs())
        .await
        .unwrap()
        .items;
    assert_eq!(runs.len(), 1, "no run after delete");
}

#[tokio::test(start_paused = true)]
async fn a_create_replayed_with_its_idempotency_key_answers_the_same_schedule() {
    let world = World::new();
    let first = create_recurring(&world.deps, &tenant(), &every_minute(), Some("k-1"))
        .await
        .unwrap();
    let again = create_recurring(&world.deps, &tenant(), &every_minute(), Some("k-1"))
        .await
        .unwrap();
    assert!(!first.replayed);
    assert!(again.replayed);
    assert_eq!(again.schedule.id, first.schedule.id);
    let listed = world
        .deps
        .recurring
        .list(&tenant(), 10, None)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1, "the replay made no second schedule");
    let mut other = every_minute();
    other.extend_from_slice(b" ");
    let reused = create_recurring(&world.deps, &tenant(), &other, Some("k-1")).await;
    assert!(
        matches!(reused, Err(prism_core::ServiceError::InvalidRequest { ref code, .. }) if code.as_deref() == Some("idempotency_key_reused")),
        "{reused:?}"
    );
}

//! The `RecurringStore` and `RecurringTrigger` contracts: schedules per tenant with every field
//! kept, writes conditional on the version, the newest-first list and the live count, the
//! idempotency key recorded with the schedule; a trigger that delivers one firing per fire time
//! to the jobs queue, none while paused or after disarm. Its own fixture ([`RecurringPorts`])
//! and macro (`recurring_contract!`): the trigger needs the jobs queue and the scheduler's time.

use prism_core::ports::{RecurringStore, RecurringTrigger};
use prism_core::recurring::decisions::first_fire;
use prism_core::recurring::{Recurrence, Recurring, RecurringStatus};

use super::*;

/// A recurring store, the trigger of the same backend and the queue its firings arrive on.
pub struct RecurringPorts {
    pub recurring: Arc<dyn RecurringStore>,
    pub trigger: Arc<dyn RecurringTrigger>,
    pub queue: Arc<dyn WorkQueue>,
    pub schedules: Arc<dyn ScheduleTime>,
    pub clock: Arc<dyn TestClock>,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

/// Daily at 09:00 UTC: one fire time in any window under a day, whatever the hour now.
fn daily() -> Recurrence {
    Recurrence::from_stored("0 9 * * *", "UTC", None, None, Some(30), "skip", "latest").unwrap()
}

fn new_schedule(ids: &IdGenerator, owner: &str, now: Timestamp) -> Recurring {
    let recurrence = daily();
    Recurring {
        id: ids.scheduled_job_id(now),
        tenant: tenant(owner),
        status: RecurringStatus::Active,
        // Not the default (chat completions), so a store that drops the endpoint fails below.
        endpoint: prism_core::ApiEndpoint::Embeddings,
        model: "gpt-contract".into(),
        metadata: Some(serde_json::from_str(r#"{"report":"daily"}"#).expect("metadata literal")),
        next_run_at: first_fire(&recurrence, now, None),
        recurrence,
        created_at: now,
        last_run_at: None,
        last_fire_at: None,
        run_count: 0,
        skipped_count: 0,
        ended_at: None,
        version: 1,
    }
}

fn body() -> Bytes {
    Bytes::from_static(br#"{"model":"gpt-contract","messages":[{"role":"user","content":"hi"}]}"#)
}

fn claim(key: &str, hash: &str, now: Timestamp) -> IdempotencyClaim {
    IdempotencyClaim {
        key: key.to_owned(),
        body_hash: hash.to_owned(),
        expires_at: now.plus(HOUR),
    }
}

async fn created(p: &RecurringPorts, schedule: &Recurring, request: &Bytes) {
    let outcome = p.recurring.create(schedule, request, None).await.unwrap();
    assert_eq!(outcome, CreateOutcome::Created { triggered: false });
}

pub async fn a_schedule_belongs_to_its_tenant_and_keeps_every_field(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let schedule = new_schedule(&ids, "alpha", p.clock.now());
    created(&p, &schedule, &body()).await;
    assert_eq!(
        p.recurring
            .get(&tenant("alpha"), &schedule.id)
            .await
            .unwrap(),
        Some(schedule.clone())
    );
    assert_eq!(
        p.recurring
            .get(&tenant("beta"), &schedule.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.recurring
            .request_body(&schedule.recurring_ref())
            .await
            .unwrap(),
        Some(body())
    );
    // A body too big to sit in a row or item (it spills on AWS) reads back whole.
    let big = new_schedule(&ids, "alpha", p.clock.now());
    let request = Bytes::from(format!(
        r#"{{"model":"gpt-contract","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(300 * 1024)
    ));
    created(&p, &big, &request).await;
    assert_eq!(
        p.recurring
            .request_body(&big.recurring_ref())
            .await
            .unwrap(),
        Some(request)
    );
}

pub async fn an_update_lands_only_on_the_version_it_read(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let schedule = new_schedule(&ids, "alpha", now);
    created(&p, &schedule, &body()).await;
    let fired = Recurring {
        run_count: 1,
        skipped_count: 2,
        last_run_at: schedule.next_run_at,
        last_fire_at: schedule.next_run_at,
        next_run_at: schedule.next_run_at.map(|at| at.plus(DAY)),
        ..schedule.clone()
    };
    assert!(p.recurring.update(&fired).await.unwrap());
    let stored = p
        .recurring
        .get(&tenant("alpha"), &schedule.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored,
        Recurring {
            version: 2,
            ..fired.clone()
        }
    );
    // A second writer that read version 1 loses, and changes nothing.
    let cancelled = Recurring {
        status: RecurringStatus::Cancelled,
        ended_at: Some(now),
        next_run_at: None,
        ..schedule.clone()
    };
    assert!(!p.recurring.update(&cancelled).await.unwrap());
    assert_eq!(
        p.recurring
            .get(&tenant("alpha"), &schedule.id)
            .await
            .unwrap(),
        Some(stored.clone())
    );
    // Another tenant cannot write it, even with the right version.
    let stolen = Recurring {
        tenant: tenant("beta"),
        ..cancelled.clone()
    };
    assert!(
        !p.recurring
            .update(&Recurring {
                version: 2,
                ..stolen
            })
            .await
            .unwrap()
    );
    assert!(
        p.recurring
            .update(&Recurring {
                version: 2,
                ..cancelled
            })
            .await
            .unwrap()
    );
}

pub async fn schedules_list_newest_first_per_tenant_and_only_live_ones_count(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let mut made = Vec::new();
    for _ in 0..3 {
        let schedule = new_schedule(&ids, "alpha", p.clock.now());
        created(&p, &schedule, &body()).await;
        made.push(schedule);
    }
    created(&p, &new_schedule(&ids, "beta", p.clock.now()), &body()).await;
    let first = p.recurring.list(&tenant("alpha"), 2, None).await.unwrap();
    let listed: Vec<_> = first.items.iter().map(|s| s.id.clone()).collect();
    assert_eq!(listed, vec![made[2].id.clone(), made[1].id.clone()]);
    assert!(first.has_more);
    let rest = p
        .recurring
        .list(&tenant("alpha"), 2, Some(&made[1].id))
        .await
        .unwrap();
    assert_eq!(rest.items, vec![made[0].clone()]);
    assert!(!rest.has_more);
    assert_eq!(p.recurring.count_live(&tenant("alpha")).await.unwrap(), 3);
    let paused = Recurring {
        status: RecurringStatus::Paused,
        next_run_at: None,
        ..made[0].clone()
    };
    let finished = Recurring {
        status: RecurringStatus::Finished,
        next_run_at: None,
        ended_at: Some(p.clock.now()),
        ..made[1].clone()
    };
    assert!(p.recurring.update(&paused).await.unwrap());
    assert!(p.recurring.update(&finished).await.unwrap());
    assert_eq!(
        p.recurring.count_live(&tenant("alpha")).await.unwrap(),
        2,
        "active and paused count, finished does not"
    );
    assert_eq!(p.recurring.count_live(&tenant("beta")).await.unwrap(), 1);
}

pub async fn an_idempotency_key_names_the_first_schedule_within_its_tenant(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let first = new_schedule(&ids, "alpha", now);
    let key = claim("k-1", "hash-a", now);
    assert_eq!(
        p.recurring
            .create(&first, &body(), Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created { triggered: false }
    );
    let retry = new_schedule(&ids, "alpha", now);
    assert_eq!(
        p.recurring
            .create(&retry, &body(), Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Replayed {
            job_id: first.id.clone(),
            same_body: true
        }
    );
    assert_eq!(
        p.recurring.get(&tenant("alpha"), &retry.id).await.unwrap(),
        None,
        "a replayed create writes nothing"
    );
    let reused = new_schedule(&ids, "alpha", now);
    assert_eq!(
        p.recurring
            .create(&reused, &body(), Some(&claim("k-1", "hash-b", now)))
            .await
            .unwrap(),
        CreateOutcome::Replayed {
            job_id: first.id.clone(),
            same_body: false
        }
    );
    let beta = new_schedule(&ids, "beta", now);
    assert_eq!(
        p.recurring
            .create(&beta, &body(), Some(&key))
            .await
            .unwrap(),
        CreateOutcome::Created { triggered: false },
        "keys are per tenant"
    );
}

/// Lets schedule time pass until `at` (a manual clock's, or the emulator pump's from now).
async fn pass_until(p: &RecurringPorts, at: Timestamp) {
    p.schedules.pass(p.clock.now().until(at)).await;
}

/// The firings waiting on the jobs queue, acknowledged, as (schedule id, fire time).
async fn firings(p: &RecurringPorts) -> Vec<(JobId, Timestamp)> {
    let delivered = p.queue.receive(10, HOUR).await.unwrap();
    let mut seen = Vec::new();
    for delivery in delivered {
        p.queue.ack(&delivery.receipt).await.unwrap();
        match delivery.item {
            WorkItem::FireSchedule { schedule, at } => seen.push((schedule.id, at)),
            other => panic!("expected a firing, got {other:?}"),
        }
    }
    seen
}

async fn armed(p: &RecurringPorts, ids: &IdGenerator) -> Recurring {
    let schedule = new_schedule(ids, "alpha", p.clock.now());
    created(p, &schedule, &body()).await;
    p.trigger.arm(&schedule).await.unwrap();
    schedule
}

pub async fn an_armed_schedule_fires_once_per_fire_time_onto_the_jobs_queue(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let schedule = armed(&p, &ids).await;
    let first = schedule.next_run_at.unwrap();
    assert!(firings(&p).await.is_empty(), "not yet due");
    pass_until(&p, first.plus(Duration::from_secs(1))).await;
    assert_eq!(firings(&p).await, vec![(schedule.id.clone(), first)]);
    // Handled: the next fire time is arranged (a no-op where the trigger recurs by itself).
    let next = Recurring {
        last_fire_at: Some(first),
        last_run_at: Some(first),
        run_count: 1,
        next_run_at: Some(first.plus(DAY)),
        version: 2,
        ..schedule.clone()
    };
    p.trigger.rearm(&next).await.unwrap();
    pass_until(&p, first.plus(DAY).plus(Duration::from_secs(1))).await;
    assert_eq!(
        firings(&p).await,
        vec![(schedule.id.clone(), first.plus(DAY))],
        "the next fire time once, and the first not again"
    );
}

pub async fn a_paused_schedule_does_not_fire_until_armed_again(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let schedule = armed(&p, &ids).await;
    let first = schedule.next_run_at.unwrap();
    let paused = Recurring {
        status: RecurringStatus::Paused,
        next_run_at: None,
        version: 2,
        ..schedule.clone()
    };
    p.trigger.pause(&paused).await.unwrap();
    pass_until(&p, first.plus(Duration::from_secs(1))).await;
    assert!(firings(&p).await.is_empty(), "paused across its fire time");
    let resumed = Recurring {
        status: RecurringStatus::Active,
        last_fire_at: Some(first),
        next_run_at: Some(first.plus(DAY)),
        version: 3,
        ..schedule.clone()
    };
    p.trigger.arm(&resumed).await.unwrap();
    pass_until(&p, first.plus(DAY).plus(Duration::from_secs(1))).await;
    assert_eq!(
        firings(&p).await,
        vec![(schedule.id.clone(), first.plus(DAY))],
        "resumed: the next fire time, not the one passed while paused"
    );
}

pub async fn a_disarmed_schedule_never_fires_and_disarm_is_idempotent(p: RecurringPorts) {
    let ids = IdGenerator::new();
    let schedule = armed(&p, &ids).await;
    let kept = armed(&p, &ids).await;
    let cancelled = Recurring {
        status: RecurringStatus::Cancelled,
        next_run_at: None,
        ended_at: Some(p.clock.now()),
        version: 2,
        ..schedule.clone()
    };
    p.trigger.disarm(&cancelled).await.unwrap();
    p.trigger.disarm(&cancelled).await.unwrap(); // nothing left to remove is not an error
    let first = schedule.next_run_at.unwrap();
    pass_until(&p, first.plus(Duration::from_secs(1))).await;
    assert_eq!(
        firings(&p).await,
        vec![(kept.id.clone(), kept.next_run_at.unwrap())],
        "only the schedule still armed fires"
    );
}

/// Expands to one `#[tokio::test]` per `RecurringStore`/`RecurringTrigger` case.
#[macro_export]
macro_rules! recurring_contract {
    ($fresh:path) => {
        $crate::recurring_contract!(@cases $fresh;
            a_schedule_belongs_to_its_tenant_and_keeps_every_field,
            an_update_lands_only_on_the_version_it_read,
            schedules_list_newest_first_per_tenant_and_only_live_ones_count,
            an_idempotency_key_names_the_first_schedule_within_its_tenant,
            an_armed_schedule_fires_once_per_fire_time_onto_the_jobs_queue,
            a_paused_schedule_does_not_fire_until_armed_again,
            a_disarmed_schedule_never_fires_and_disarm_is_idempotent,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contracts::$case($fresh().await).await;
            }
        )*
    };
}

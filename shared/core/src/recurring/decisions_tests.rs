//! The state machine and the firing rules: duplicates, catch-up, overlap, max_runs, end_at.

use super::*;
use crate::clock::parse_rfc3339;
use crate::ids::IdGenerator;
use crate::recurring::cron::{parse_cron, parse_zone};

fn at(text: &str) -> Timestamp {
    parse_rfc3339(text).unwrap()
}

fn every_minute(created: &str) -> Recurring {
    let recurrence = Recurrence {
        cron: parse_cron("* * * * *").unwrap(),
        timezone: "UTC".into(),
        zone: parse_zone("UTC").unwrap(),
        start_at: None,
        end_at: None,
        max_runs: None,
        overlap: OverlapPolicy::Skip,
        catch_up: CatchUpPolicy::Latest,
    };
    let created = at(created);
    Recurring {
        id: IdGenerator::new().scheduled_job_id(created),
        tenant: crate::TenantId::parse("acme").unwrap(),
        status: RecurringStatus::Active,
        endpoint: crate::ApiEndpoint::ChatCompletions,
        model: "m".into(),
        metadata: None,
        next_run_at: first_fire(&recurrence, created, None),
        recurrence,
        created_at: created,
        last_run_at: None,
        last_fire_at: None,
        run_count: 0,
        skipped_count: 0,
        ended_at: None,
        version: 1,
    }
}

fn handled(decision: FireDecision) -> (Timestamp, bool, Recurring) {
    match decision {
        FireDecision::Handle { at, run, next } => (at, run, *next),
        other => panic!("expected a run decision, got {other:?}"),
    }
}

#[test]
fn terminal_statuses_allow_no_transition() {
    for from in RecurringStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
        for to in RecurringStatus::ALL {
            assert!(!from.can_become(to), "{from:?} -> {to:?}");
        }
    }
}

#[test]
fn an_on_time_firing_makes_one_run_and_a_repeat_of_it_is_ignored() {
    let s = every_minute("2026-04-05T09:00:20Z");
    assert_eq!(s.next_run_at, Some(at("2026-04-05T09:01:00Z")));
    let (fired, run, next) = handled(on_fire(
        &s,
        at("2026-04-05T09:01:00Z"),
        at("2026-04-05T09:01:00.300Z"),
        false,
    ));
    assert_eq!((fired, run), (at("2026-04-05T09:01:00Z"), true));
    assert_eq!(next.run_count, 1);
    assert_eq!(next.next_run_at, Some(at("2026-04-05T09:02:00Z")));
    assert_eq!(
        on_fire(&next, fired, at("2026-04-05T09:01:05Z"), false),
        FireDecision::Ignore
    );
}

#[test]
fn an_early_firing_is_not_due() {
    let s = every_minute("2026-04-05T09:00:20Z");
    assert_eq!(
        on_fire(
            &s,
            at("2026-04-05T09:01:00Z"),
            at("2026-04-05T09:00:58Z"),
            false
        ),
        FireDecision::NotDue(Duration::from_secs(2))
    );
}

#[test]
fn a_firing_after_downtime_makes_one_run_for_the_latest_missed_time() {
    let s = every_minute("2026-04-05T09:00:20Z");
    let (fired, run, next) = handled(on_fire(
        &s,
        at("2026-04-05T09:01:00Z"),
        at("2026-04-05T09:17:30Z"),
        false,
    ));
    assert_eq!((fired, run), (at("2026-04-05T09:17:00Z"), true));
    assert_eq!(next.run_count, 1);
    assert_eq!(next.next_run_at, Some(at("2026-04-05T09:18:00Z")));
    // The other late deliveries of the outage are duplicates now.
    assert_eq!(
        on_fire(
            &next,
            at("2026-04-05T09:05:00Z"),
            at("2026-04-05T09:17:31Z"),
            false
        ),
        FireDecision::Ignore
    );
    // Skip: the latest missed fire time (09:15) is 150 s past, so no run; a fire time within
    // a minute would still run.
    let mut skip = s.clone();
    skip.recurrence.catch_up = CatchUpPolicy::Skip;
    skip.recurrence.cron = parse_cron("*/5 * * * *").unwrap();
    let (fired, run, next) = handled(on_fire(
        &skip,
        at("2026-04-05T09:05:00Z"),
        at("2026-04-05T09:17:30Z"),
        false,
    ));
    assert_eq!((fired, run), (at("2026-04-05T09:15:00Z"), false));
    assert_eq!(next.next_run_at, Some(at("2026-04-05T09:20:00Z")));
    assert_eq!((next.run_count, next.skipped_count), (0, 1));
}

#[test]
fn overlap_skip_passes_a_firing_while_the_previous_run_is_unfinished() {
    let s = every_minute("2026-04-05T09:00:20Z");
    let fire = at("2026-04-05T09:01:00Z");
    let (_, run, _) = handled(on_fire(&s, fire, fire, true));
    assert!(!run);
    let mut allow = s.clone();
    allow.recurrence.overlap = OverlapPolicy::Allow;
    let (_, run, _) = handled(on_fire(&allow, fire, fire, true));
    assert!(run);
}

#[test]
fn max_runs_and_end_at_finish_the_schedule() {
    let mut s = every_minute("2026-04-05T09:00:20Z");
    s.recurrence.max_runs = Some(2);
    let (_, _, s) = handled(on_fire(
        &s,
        at("2026-04-05T09:01:00Z"),
        at("2026-04-05T09:01:00Z"),
        false,
    ));
    assert_eq!(s.status, RecurringStatus::Active);
    let (_, run, s) = handled(on_fire(
        &s,
        at("2026-04-05T09:02:00Z"),
        at("2026-04-05T09:02:00Z"),
        false,
    ));
    assert!(run);
    assert_eq!(
        (s.status, s.run_count, s.next_run_at),
        (RecurringStatus::Finished, 2, None)
    );

    let mut s = every_minute("2026-04-05T09:00:20Z");
    s.recurrence.end_at = Some(at("2026-04-05T09:01:30Z"));
    let (_, run, s) = handled(on_fire(
        &s,
        at("2026-04-05T09:01:00Z"),
        at("2026-04-05T09:01:00Z"),
        false,
    ));
    assert!(run);
    assert_eq!(s.status, RecurringStatus::Finished);
}

#[test]
fn pause_resume_and_delete_follow_the_state_machine() {
    let s = every_minute("2026-04-05T09:00:20Z");
    let Transition::Write(paused) = pause(&s) else {
        panic!()
    };
    assert_eq!(
        (paused.status, paused.next_run_at),
        (RecurringStatus::Paused, None)
    );
    assert_eq!(pause(&paused), Transition::Unchanged);
    assert_eq!(
        on_fire(
            &paused,
            at("2026-04-05T09:01:00Z"),
            at("2026-04-05T09:01:00Z"),
            false
        ),
        FireDecision::Ignore
    );
    // Resumed ten minutes later: the fire times it slept through are not caught up.
    let Transition::Write(resumed) = resume(paused.as_ref(), at("2026-04-05T09:10:10Z")) else {
        panic!()
    };
    assert_eq!(resumed.next_run_at, Some(at("2026-04-05T09:11:00Z")));
    assert_eq!(
        on_fire(
            &resumed,
            at("2026-04-05T09:05:00Z"),
            at("2026-04-05T09:10:20Z"),
            false
        ),
        FireDecision::Ignore
    );
    let Transition::Write(cancelled) = cancel(resumed.as_ref(), at("2026-04-05T09:10:30Z")) else {
        panic!()
    };
    assert_eq!(cancelled.status, RecurringStatus::Cancelled);
    assert_eq!(
        cancel(&cancelled, at("2026-04-05T09:11:00Z")),
        Transition::Unchanged
    );
    assert_eq!(
        resume(&cancelled, at("2026-04-05T09:11:00Z")),
        Transition::Refused
    );
    assert_eq!(pause(&cancelled), Transition::Refused);
}

#[test]
fn run_ids_derive_from_the_schedule_and_the_fire_time() {
    let s = every_minute("2026-04-05T09:00:20Z");
    let a = crate::ids::run_job_id(&s.id, at("2026-04-05T09:01:00Z"));
    assert_eq!(a, crate::ids::run_job_id(&s.id, at("2026-04-05T09:01:00Z")));
    assert_ne!(a, crate::ids::run_job_id(&s.id, at("2026-04-05T09:02:00Z")));
    assert!(a.as_str().starts_with("job_"));
    assert!(crate::JobId::parse(a.as_str()).is_some());
    let other = every_minute("2026-04-05T09:00:21Z");
    assert_ne!(
        a,
        crate::ids::run_job_id(&other.id, at("2026-04-05T09:01:00Z"))
    );
}

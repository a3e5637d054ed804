//! The rules of a recurring schedule as pure functions: where it starts, what pause, resume and
//! delete do in each status, and what one firing does (which fire time it stands for, whether it
//! makes a run, and the schedule after it). Adapters load, ask these, and write conditionally on
//! the schedule's version.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::recurring::cron::{latest_fire_until, next_fire_since};
use crate::recurring::{CatchUpPolicy, OverlapPolicy, Recurrence, Recurring, RecurringStatus};

/// A firing handled within this long of its fire time is on time; later, it is a catch-up
/// (EventBridge Scheduler delivers within the minute; its retries can be hours late).
pub const ON_TIME: Duration = Duration::from_secs(60);

/// The first fire time of a schedule created (or resumed) at `now`: after `now`, not before
/// `start_at`, not after `end_at`. `None` when no fire time is left in that window.
pub fn first_fire(
    recurrence: &Recurrence,
    now: Timestamp,
    last_fire: Option<Timestamp>,
) -> Option<Timestamp> {
    let floor = recurrence
        .start_at
        .map_or(now, |start| now.max(start.minus(Duration::from_millis(1))));
    next_fire_since(&recurrence.cron, recurrence.zone, floor, last_fire)
        .filter(|at| recurrence.end_at.is_none_or(|end| *at <= end))
}

/// What pause, resume or delete does to a schedule in a given status.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    /// Write this schedule (its version is the one read; the store bumps it).
    Write(Box<Recurring>),
    /// Already in the asked-for state: answer with it as is.
    Unchanged,
    /// Not allowed from this status (409).
    Refused,
}

fn moved(schedule: &Recurring, status: RecurringStatus) -> Transition {
    if schedule.status == status {
        Transition::Unchanged
    } else if schedule.status.can_become(status) {
        Transition::Write(Box::new(Recurring {
            status,
            ..schedule.clone()
        }))
    } else {
        Transition::Refused
    }
}

pub fn pause(schedule: &Recurring) -> Transition {
    match moved(schedule, RecurringStatus::Paused) {
        Transition::Write(next) => Transition::Write(Box::new(Recurring {
            next_run_at: None,
            ..*next
        })),
        other => other,
    }
}

/// Paused to active: fire times that passed while paused are not caught up (they count as
/// handled); if none is left before `end_at`, the schedule finishes instead.
pub fn resume(schedule: &Recurring, now: Timestamp) -> Transition {
    if schedule.status != RecurringStatus::Paused {
        return moved(schedule, RecurringStatus::Active);
    }
    let handled = schedule.last_fire_at.map_or(now, |last| last.max(now));
    match first_fire(&schedule.recurrence, now, schedule.last_fire_at) {
        Some(next) => Transition::Write(Box::new(Recurring {
            status: RecurringStatus::Active,
            next_run_at: Some(next),
            last_fire_at: Some(handled),
            ..schedule.clone()
        })),
        None => Transition::Write(Box::new(finished(schedule, now))),
    }
}

/// Delete: no further runs. A finished schedule stays finished (nothing left to stop).
pub fn cancel(schedule: &Recurring, now: Timestamp) -> Transition {
    match moved(schedule, RecurringStatus::Cancelled) {
        Transition::Write(next) => Transition::Write(Box::new(Recurring {
            next_run_at: None,
            ended_at: Some(now),
            ..*next
        })),
        other => other,
    }
}

fn finished(schedule: &Recurring, now: Timestamp) -> Recurring {
    Recurring {
        status: RecurringStatus::Finished,
        next_run_at: None,
        ended_at: Some(now),
        ..schedule.clone()
    }
}

/// What one firing does.
#[derive(Debug, Clone, PartialEq)]
pub enum FireDecision {
    /// Nothing to do: the schedule is not active, or this fire time was handled already (a
    /// duplicate or redelivered firing), or the message names no fire time of the schedule.
    Ignore,
    /// Delivered before its fire time: deliver again after this long.
    NotDue(Duration),
    /// Handle fire time `at`: make its run if `run`, then write `next` (conditionally on the
    /// version read).
    Handle {
        at: Timestamp,
        run: bool,
        next: Box<Recurring>,
    },
}

/// Decides a firing delivered for `fire_at`, handled at `now`. `previous_unfinished` says
/// whether the latest run is still pending or running (only asked under the skip overlap
/// policy). The fire time handled is the latest one due, so a late delivery makes one run for
/// all the fire times an outage spanned, and older deliveries that arrive after it are
/// duplicates.
pub fn on_fire(
    schedule: &Recurring,
    fire_at: Timestamp,
    now: Timestamp,
    previous_unfinished: bool,
) -> FireDecision {
    if schedule.status != RecurringStatus::Active {
        return FireDecision::Ignore;
    }
    if fire_at > now {
        return FireDecision::NotDue(now.until(fire_at));
    }
    let recurrence = &schedule.recurrence;
    // Fire times up to here are handled, or came before the schedule began.
    let floor = schedule.last_fire_at.unwrap_or_else(|| {
        let created = schedule.created_at;
        recurrence.start_at.map_or(created, |start| {
            created.max(start.minus(Duration::from_millis(1)))
        })
    });
    if fire_at <= floor && schedule.last_fire_at.is_some() {
        return FireDecision::Ignore;
    }
    let upto = recurrence.end_at.map_or(now, |end| now.min(end));
    let Some(at) = latest_fire_until(&recurrence.cron, recurrence.zone, floor, upto) else {
        // No fire time due past the ones handled: a repeat of a handled firing (EventBridge's
        // scheduled time need not be the cron instant to the second), or a stray.
        return FireDecision::Ignore;
    };
    let late = at.until(now) > ON_TIME;
    let out_of_runs = recurrence
        .max_runs
        .is_some_and(|max| schedule.run_count >= max);
    let skip_late = late && recurrence.catch_up == CatchUpPolicy::Skip;
    let skip_overlap = previous_unfinished && recurrence.overlap == OverlapPolicy::Skip;
    let run = !(out_of_runs || skip_late || skip_overlap);
    let run_count = schedule.run_count + u32::from(run);
    let mut next = Recurring {
        last_fire_at: Some(at),
        last_run_at: if run { Some(at) } else { schedule.last_run_at },
        run_count,
        skipped_count: schedule.skipped_count + u32::from(!run),
        ..schedule.clone()
    };
    let next_fire = next_fire_since(&recurrence.cron, recurrence.zone, at.max(now), Some(at))
        .filter(|n| recurrence.end_at.is_none_or(|end| *n <= end));
    let exhausted = recurrence.max_runs.is_some_and(|max| run_count >= max);
    match next_fire {
        Some(n) if !exhausted => next.next_run_at = Some(n),
        _ => next = finished(&next, now),
    }
    FireDecision::Handle {
        at,
        run,
        next: Box::new(next),
    }
}

#[cfg(test)]
#[path = "decisions_tests.rs"]
mod tests;

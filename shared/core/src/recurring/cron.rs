//! When a recurring schedule fires: reading a cron expression (with the position of any error),
//! the next fire time after an instant in an IANA time zone, and the same expression as
//! EventBridge Scheduler's `cron(...)`. Pure functions; every backend asks these.
//!
//! croner matches the expression on the wall-clock calendar (lists, ranges, steps, `L`, `W`,
//! `#`, month ends, leap days); chrono-tz maps a wall-clock time to an instant. The DST rule is
//! ours, chosen to match EventBridge Scheduler: a wall-clock time that does not exist (the hour
//! a spring-forward skips) is skipped, and one that exists twice (the hour a fall-back repeats)
//! fires once, at its first occurrence.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

use crate::clock::Timestamp;

/// The fields of an expression, in order; a 6-field expression starts with seconds.
const FIELDS: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day of month",
    "month",
    "day of week",
];

/// Wall-clock candidates looked at before giving up (a pattern that only matches inside DST
/// gaps, or never again: `0 0 30 2 *`).
const MAX_CANDIDATES: usize = 10_000;

/// Why an expression was refused: the message names the field, `position` is the character
/// offset of the offending field (or of the end, for a missing one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSyntaxError {
    pub message: String,
    pub position: usize,
}

/// A parsed expression: 5 fields (`minute hour day-of-month month day-of-week`, as POSIX cron,
/// Sunday = 0 or 7), or 6 with leading seconds where the deployment allows sub-minute schedules.
#[derive(Debug, Clone)]
pub struct CronExpr {
    text: String,
    /// The expression as croner reads it: always 6 fields (seconds first), `?` read as `*`.
    cron: Cron,
    /// The five minute-resolution fields, `?` read as `*`.
    fields: [String; 5],
    has_seconds: bool,
}

impl PartialEq for CronExpr {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl CronExpr {
    /// The expression as the client sent it (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the expression has a seconds field (only some deployments allow one).
    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }
}

/// `@hourly` and friends, as the 5-field expressions they stand for.
fn nickname(text: &str) -> Option<&'static str> {
    match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => Some("0 0 1 1 *"),
        "@monthly" => Some("0 0 1 * *"),
        "@weekly" => Some("0 0 * * 0"),
        "@daily" | "@midnight" => Some("0 0 * * *"),
        "@hourly" => Some("0 * * * *"),
        _ => None,
    }
}

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        .year(Year::Disallowed)
        .build()
}

fn is_wildcard(field: &str) -> bool {
    field == "*" || field == "?"
}

/// Reads a cron expression, reporting the first bad field with its position.
pub fn parse_cron(text: &str) -> Result<CronExpr, CronSyntaxError> {
    let trimmed = text.trim();
    let lead = text.len() - text.trim_start().len();
    let expanded = if trimmed.starts_with('@') {
        nickname(trimmed).ok_or_else(|| CronSyntaxError {
            message: format!(
                "Unknown nickname '{trimmed}' at position {lead}: expected @yearly, @monthly, @weekly, @daily or @hourly."
            ),
            position: lead,
        })?
    } else {
        trimmed
    };
    // Each field with its character offset in `text`.
    let mut fields: Vec<(usize, &str)> = Vec::new();
    let mut offset = 0;
    for part in expanded.split_whitespace() {
        let at = expanded[offset..].find(part).map_or(offset, |i| offset + i);
        fields.push((if expanded == trimmed { lead + at } else { lead }, part));
        offset = at + part.len();
    }
    let has_seconds = match fields.len() {
        5 => false,
        6 => true,
        n if n < 5 => {
            return Err(CronSyntaxError {
                message: format!(
                    "Expected 5 fields (minute hour day-of-month month day-of-week) but found {n}: the {} field is missing at position {}.",
                    FIELDS[n + 1],
                    text.trim_end().len()
                ),
                position: text.trim_end().len(),
            });
        }
        _ => {
            let (position, _) = fields[6];
            return Err(CronSyntaxError {
                message: format!(
                    "Expected 5 fields (minute hour day-of-month month day-of-week) but found {}: unexpected field at position {position} (years are not supported).",
                    fields.len()
                ),
                position,
            });
        }
    };
    let names = if has_seconds {
        &FIELDS[..]
    } else {
        &FIELDS[1..]
    };
    let mut six: Vec<String> = Vec::with_capacity(6);
    if !has_seconds {
        six.push("0".to_owned());
    }
    for (i, (position, field)) in fields.iter().enumerate() {
        let name = names[i];
        let is_day = name == "day of month" || name == "day of week";
        if field.split(',').any(str::is_empty) {
            return Err(CronSyntaxError {
                message: format!(
                    "Invalid {name} field '{field}' at position {position}: a list has an empty item (a comma at its start or end, or two together)."
                ),
                position: *position,
            });
        }
        if field.contains('?') && !(is_day && *field == "?") {
            return Err(CronSyntaxError {
                message: format!(
                    "Invalid {name} field '{field}' at position {position}: '?' stands alone, and only for a day field."
                ),
                position: *position,
            });
        }
        six.push(if *field == "?" {
            "*".to_owned()
        } else {
            (*field).to_owned()
        });
    }
    // One field at a time among wildcards, so an error names the field that caused it.
    for (i, (position, field)) in fields.iter().enumerate() {
        let slot = i + usize::from(!has_seconds);
        let mut alone: Vec<&str> = vec!["0", "*", "*", "*", "*", "*"];
        alone[slot] = &six[slot];
        if let Err(error) = parser().parse(&alone.join(" ")) {
            let name = names[i];
            return Err(CronSyntaxError {
                message: format!(
                    "Invalid {name} field '{field}' at position {position}: {}.",
                    describe(&error)
                ),
                position: *position,
            });
        }
    }
    let (dom, dow) = (&six[3], &six[5]);
    if !is_wildcard(dom) && !is_wildcard(dow) {
        let position = fields[fields.len() - 1].0;
        return Err(CronSyntaxError {
            message: format!(
                "Invalid day of week field '{dow}' at position {position}: day of month and day of week cannot both be restricted (EventBridge Scheduler needs one of them to be '*' or '?')."
            ),
            position,
        });
    }
    let cron = parser()
        .parse(&six.join(" "))
        .map_err(|error| CronSyntaxError {
            message: format!("Invalid cron expression: {}.", describe(&error)),
            position: lead,
        })?;
    Ok(CronExpr {
        text: trimmed.to_owned(),
        cron,
        fields: [
            six[1].clone(),
            six[2].clone(),
            six[3].clone(),
            six[4].clone(),
            six[5].clone(),
        ],
        has_seconds,
    })
}

fn describe(error: &croner::errors::CronError) -> String {
    error.to_string().trim_end_matches('.').to_owned()
}

/// An IANA zone name (`Europe/Berlin`, `UTC`); `None` for an unknown one.
pub fn parse_zone(name: &str) -> Option<Tz> {
    Tz::from_str(name).ok()
}

fn naive(at: Timestamp, zone: Tz) -> Option<NaiveDateTime> {
    let utc = DateTime::<Utc>::from_timestamp_millis(at.0)?;
    Some(utc.with_timezone(&zone).naive_local())
}

fn timestamp<T: TimeZone>(at: &DateTime<T>) -> Timestamp {
    Timestamp(at.timestamp_millis())
}

/// The first fire time strictly after `after`, in `zone`; `None` when the expression never
/// fires again. A wall-clock time in a DST gap is skipped; one in a DST overlap fires once, at
/// its first occurrence (at the second only when the first is not after `after`).
pub fn next_fire(expr: &CronExpr, zone: Tz, after: Timestamp) -> Option<Timestamp> {
    let mut cursor = naive(after, zone)?;
    for _ in 0..MAX_CANDIDATES {
        let candidate = expr.cron.find_next_occurrence(&cursor, false).ok()?;
        match zone.from_local_datetime(&candidate) {
            LocalResult::Single(at) if timestamp(&at) > after => return Some(timestamp(&at)),
            LocalResult::Ambiguous(first, second) => {
                // The repeated hour: once, at its first occurrence unless that is already past.
                if timestamp(&first) > after {
                    return Some(timestamp(&first));
                }
                // `after` is inside the repeated hour, past the first: the schedule did not
                // exist (or was paused) then, so the second occurrence is its one run.
                if timestamp(&second) > after {
                    return Some(timestamp(&second));
                }
            }
            // A wall-clock time the zone skips: no fire.
            LocalResult::None | LocalResult::Single(_) => {}
        }
        cursor = candidate;
    }
    None
}

/// [`next_fire`] for a schedule that last fired at `last_fire`: a wall-clock time fires once,
/// so after a fire in the first pass of a repeated hour, the second pass of that same time
/// (reachable when `after` is a later instant inside the repeated hour, e.g. a resume there)
/// is passed over.
pub fn next_fire_since(
    expr: &CronExpr,
    zone: Tz,
    after: Timestamp,
    last_fire: Option<Timestamp>,
) -> Option<Timestamp> {
    let next = next_fire(expr, zone, after)?;
    match last_fire {
        Some(last) if naive(last, zone) == naive(next, zone) => next_fire(expr, zone, next),
        _ => Some(next),
    }
}

/// The latest fire time in `(after, upto]`: what a late delivery catches up to (one run, never
/// a burst, however many fire times an outage spanned).
pub fn latest_fire_until(
    expr: &CronExpr,
    zone: Tz,
    after: Timestamp,
    upto: Timestamp,
) -> Option<Timestamp> {
    previous_fire(expr, zone, upto).filter(|at| *at > after)
}

/// The latest fire time at or before `upto`, walking back over wall-clock candidates.
fn previous_fire(expr: &CronExpr, zone: Tz, upto: Timestamp) -> Option<Timestamp> {
    let mut cursor = naive(upto, zone)?;
    for _ in 0..MAX_CANDIDATES {
        let candidate = expr.cron.find_previous_occurrence(&cursor, true).ok()?;
        if let LocalResult::Single(at) | LocalResult::Ambiguous(at, _) =
            zone.from_local_datetime(&candidate)
            && timestamp(&at) <= upto
        {
            return Some(timestamp(&at));
        }
        cursor = candidate - chrono::Duration::seconds(1);
    }
    None
}

/// The shortest gap between consecutive fire times among the next `count` after `from`: what
/// the minimum-interval rule checks.
pub fn shortest_interval(
    expr: &CronExpr,
    zone: Tz,
    from: Timestamp,
    count: usize,
) -> Option<Duration> {
    let mut previous = next_fire(expr, zone, from)?;
    let mut shortest: Option<Duration> = None;
    for _ in 1..count {
        let Some(next) = next_fire(expr, zone, previous) else {
            break;
        };
        let gap = previous.until(next);
        shortest = Some(shortest.map_or(gap, |s| s.min(gap)));
        previous = next;
    }
    shortest
}

/// The same schedule as EventBridge Scheduler's `cron(minutes hours day-of-month month
/// day-of-week year)`: day of week renumbered (POSIX Sunday = 0 or 7, EventBridge Sunday = 1),
/// the unrestricted day field written `?`, any year. `None` for an expression with seconds,
/// which EventBridge cannot express.
pub fn eventbridge_expression(expr: &CronExpr) -> Option<String> {
    if expr.has_seconds {
        return None;
    }
    let [minute, hour, dom, month, dow] = &expr.fields;
    let (dom, dow) = match (is_wildcard(dom), is_wildcard(dow)) {
        (true, true) => ("*".to_owned(), "?".to_owned()),
        (true, false) => ("?".to_owned(), eventbridge_weekdays(dow)?),
        (false, _) => (dom.clone(), "?".to_owned()),
    };
    Some(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

/// One POSIX weekday number (0-7, Sunday twice) as EventBridge's (1-7, Sunday = 1).
fn eventbridge_day(day: &str) -> Option<String> {
    match day.parse::<u8>() {
        Ok(n @ 0..=6) => Some((n + 1).to_string()),
        Ok(7) => Some("1".to_owned()),
        Ok(_) => None,
        // A name (MON) reads the same in both.
        Err(_) => Some(day.to_owned()),
    }
}

/// A POSIX day-of-week field renumbered for EventBridge, item by item.
fn eventbridge_weekdays(field: &str) -> Option<String> {
    let mut items = Vec::new();
    for item in field.split(',') {
        let (base, step) = match item.split_once('/') {
            Some((base, step)) => (base, Some(step)),
            None => (item, None),
        };
        let step = step.map(|s| format!("/{s}")).unwrap_or_default();
        if base == "*" {
            items.push(format!("*{step}"));
        } else if let Some((day, nth)) = base.split_once('#') {
            items.push(format!("{}#{nth}{step}", eventbridge_day(day)?));
        } else if let Some(day) = base.strip_suffix('L').filter(|d| !d.is_empty()) {
            items.push(format!("{}L{step}", eventbridge_day(day)?));
        } else if let Some((from, to)) = base.split_once('-') {
            match (eventbridge_day(from)?, to) {
                // Up to POSIX's second Sunday (7): EventBridge's week ends on Saturday (7).
                (from, "7") if step.is_empty() => {
                    items.push(format!("{from}-7"));
                    items.push("1".to_owned());
                }
                (from, to) => items.push(format!("{from}-{}{step}", eventbridge_day(to)?)),
            }
        } else {
            items.push(format!("{}{step}", eventbridge_day(base)?));
        }
    }
    Some(items.join(","))
}

#[cfg(test)]
#[path = "cron_tests.rs"]
mod tests;

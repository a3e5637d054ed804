//! The fire-time rules: DST in Europe/Berlin (the table README repeats), leap days, month ends,
//! syntax errors with their positions, and the EventBridge form of each expression.

use super::*;
use crate::clock::{format_rfc3339, parse_rfc3339};

fn at(text: &str) -> Timestamp {
    parse_rfc3339(text).unwrap()
}

fn fires(cron: &str, zone: &str, after: &str, count: usize) -> Vec<String> {
    let expr = parse_cron(cron).unwrap();
    let zone = parse_zone(zone).unwrap();
    let mut out = Vec::new();
    let mut cursor = at(after);
    for _ in 0..count {
        let Some(next) = next_fire(&expr, zone, cursor) else {
            break;
        };
        out.push(format_rfc3339(next));
        cursor = next;
    }
    out
}

/// The DST table (README, "Recurring schedules"): a daily 02:30 job in Europe/Berlin.
#[test]
fn daily_0230_berlin_skips_the_spring_forward_day_and_runs_once_on_the_fall_back_day() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day, so no run.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-03-27T12:00:00Z", 3),
        [
            "2026-03-28T01:30:00Z", // 02:30 CET
            "2026-03-30T00:30:00Z", // 02:30 CEST; the 29th has no 02:30
            "2026-03-31T00:30:00Z",
        ]
    );
    // 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:30 happens twice; the job runs at the
    // first (CEST), not again at the second (CET).
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-10-23T12:00:00Z", 3),
        [
            "2026-10-24T00:30:00Z", // 02:30 CEST
            "2026-10-25T00:30:00Z", // first 02:30 (CEST); 01:30Z (CET) is passed over
            "2026-10-26T01:30:00Z", // 02:30 CET
        ]
    );
}

#[test]
fn an_hourly_job_runs_once_per_wall_clock_time_across_both_changes() {
    // Spring forward: 01:30 CET, then 03:30 CEST one real hour later (02:30 does not exist).
    assert_eq!(
        fires("30 * * * *", "Europe/Berlin", "2026-03-29T00:00:00Z", 2),
        ["2026-03-29T00:30:00Z", "2026-03-29T01:30:00Z"]
    );
    // Fall back: 02:30 CEST, then 03:30 CET two real hours later (02:30 CET is passed over).
    assert_eq!(
        fires("30 * * * *", "Europe/Berlin", "2026-10-24T23:45:00Z", 3),
        [
            "2026-10-25T00:30:00Z", // 02:30 CEST
            "2026-10-25T02:30:00Z", // 03:30 CET
            "2026-10-25T03:30:00Z",
        ]
    );
}

#[test]
fn a_schedule_created_inside_the_repeated_hour_runs_at_its_second_pass() {
    // Created at 02:10 CET (the second pass): 02:30 CEST is already past, 02:30 CET is its run.
    assert_eq!(
        fires("30 2 * * *", "Europe/Berlin", "2026-10-25T01:10:00Z", 1),
        ["2026-10-25T01:30:00Z"]
    );
    // But a schedule that fired at the first pass does not fire again at the second.
    let expr = parse_cron("30 2 * * *").unwrap();
    let zone = parse_zone("Europe/Berlin").unwrap();
    let next = next_fire_since(
        &expr,
        zone,
        at("2026-10-25T01:10:00Z"),
        Some(at("2026-10-25T00:30:00Z")),
    );
    assert_eq!(next, Some(at("2026-10-26T01:30:00Z")));
}

#[test]
fn every_minute_across_spring_forward_has_no_gap_in_real_time() {
    assert_eq!(
        fires("* * * * *", "Europe/Berlin", "2026-03-29T00:58:00Z", 3),
        [
            "2026-03-29T00:59:00Z", // 01:59 CET
            "2026-03-29T01:00:00Z", // 03:00 CEST
            "2026-03-29T01:01:00Z",
        ]
    );
}

#[test]
fn leap_days_and_month_ends() {
    // The 29th of February: only in leap years.
    assert_eq!(
        fires("0 12 29 2 *", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
    );
    // The 31st: months without one are skipped.
    assert_eq!(
        fires("0 0 31 * *", "UTC", "2026-01-31T00:00:00Z", 3),
        [
            "2026-03-31T00:00:00Z",
            "2026-05-31T00:00:00Z",
            "2026-07-31T00:00:00Z"
        ]
    );
    // `L`: the last day of each month, February's in a leap year included.
    assert_eq!(
        fires("0 0 L * *", "UTC", "2028-01-31T00:00:00Z", 3),
        [
            "2028-02-29T00:00:00Z",
            "2028-03-31T00:00:00Z",
            "2028-04-30T00:00:00Z"
        ]
    );
    // Month end in a zone: 23:30 on the last day in Tokyo is 14:30Z.
    assert_eq!(
        fires("30 23 L * *", "Asia/Tokyo", "2026-02-01T00:00:00Z", 1),
        ["2026-02-28T14:30:00Z"]
    );
}

#[test]
fn weekdays_follow_posix_numbering() {
    // 2026-04-03 is a Friday: Mon-Fri at 09:00 Berlin (CEST) skips the weekend.
    assert_eq!(
        fires("0 9 * * 1-5", "Europe/Berlin", "2026-04-03T08:00:00Z", 2),
        ["2026-04-06T07:00:00Z", "2026-04-07T07:00:00Z"]
    );
    assert_eq!(
        fires("0 9 * * 0", "UTC", "2026-04-03T00:00:00Z", 1),
        fires("0 9 * * 7", "UTC", "2026-04-03T00:00:00Z", 1)
    );
    assert_eq!(
        fires("0 9 ? * SUN", "UTC", "2026-04-03T00:00:00Z", 1),
        ["2026-04-05T09:00:00Z"]
    );
}

#[test]
fn an_expression_that_never_fires_again_has_no_next_time() {
    assert_eq!(
        fires("0 0 30 2 *", "UTC", "2026-01-01T00:00:00Z", 1),
        Vec::<String>::new()
    );
}

#[test]
fn catch_up_picks_only_the_latest_missed_fire_time() {
    let expr = parse_cron("* * * * *").unwrap();
    let zone = parse_zone("UTC").unwrap();
    let latest = latest_fire_until(
        &expr,
        zone,
        at("2026-04-05T09:00:00Z"),
        at("2026-04-05T11:17:30Z"),
    );
    assert_eq!(latest, Some(at("2026-04-05T11:17:00Z")));
    assert_eq!(
        latest_fire_until(
            &expr,
            zone,
            at("2026-04-05T11:17:00Z"),
            at("2026-04-05T11:17:30Z")
        ),
        None
    );
}

#[test]
fn syntax_errors_name_the_field_and_its_position() {
    for (cron, position, field) in [
        ("0 25 * * *", 2, "hour"),
        ("61 * * * *", 0, "minute"),
        ("0 9 * 13 *", 6, "month"),
        ("0 9 * * 8", 8, "day of week"),
        ("0 9 1 * 1", 8, "day of week"),
        ("0  9 x * *", 5, "day of month"),
        ("* * * *", 7, "day of week"),
        ("0 9 * * * 2026 1", 15, "unexpected"),
        ("@sometimes", 0, "nickname"),
        ("0 ? * * *", 2, "hour"),
    ] {
        let error = parse_cron(cron).unwrap_err();
        assert_eq!(error.position, position, "{cron}: {error:?}");
        assert!(
            error.message.to_lowercase().contains(field),
            "{cron}: {}",
            error.message
        );
        assert!(
            error.message.contains(&format!("position {position}")),
            "{cron}"
        );
    }
}

#[test]
fn a_seconds_field_is_read_and_its_interval_measured() {
    let expr = parse_cron("*/10 * * * * *").unwrap();
    assert!(expr.has_seconds());
    let zone = parse_zone("UTC").unwrap();
    assert_eq!(
        shortest_interval(&expr, zone, at("2026-04-05T09:00:00Z"), 5),
        Some(Duration::from_secs(10))
    );
    let daily = parse_cron("@daily").unwrap();
    assert_eq!(
        shortest_interval(&daily, zone, at("2026-04-05T09:00:00Z"), 5),
        Some(Duration::from_secs(86_400))
    );
    assert_eq!(eventbridge_expression(&expr), None);
}

#[test]
fn zones_are_iana_names() {
    assert!(parse_zone("Europe/Berlin").is_some());
    assert!(parse_zone("UTC").is_some());
    assert!(parse_zone("Mars/Olympus_Mons").is_none());
    assert!(parse_zone("CEST").is_none());
}

#[test]
fn eventbridge_expressions_renumber_weekdays_and_write_the_free_day_as_a_question_mark() {
    for (posix, eventbridge) in [
        ("0 9 * * 1-5", "cron(0 9 ? * 2-6 *)"),
        ("30 2 * * *", "cron(30 2 * * ? *)"),
        ("* * * * *", "cron(* * * * ? *)"),
        ("0 0 L * *", "cron(0 0 L * ? *)"),
        ("0 0 15 * ?", "cron(0 0 15 * ? *)"),
        ("0 0 * * 0", "cron(0 0 ? * 1 *)"),
        ("0 0 * * 7", "cron(0 0 ? * 1 *)"),
        ("0 0 * * 5-7", "cron(0 0 ? * 6-7,1 *)"),
        ("0 0 * * 1,3,5", "cron(0 0 ? * 2,4,6 *)"),
        ("0 0 * * MON-FRI", "cron(0 0 ? * MON-FRI *)"),
        ("0 0 * * 1#2", "cron(0 0 ? * 2#2 *)"),
        ("0 0 * * */2", "cron(0 0 ? * */2 *)"),
        ("*/15 8-18 * JAN,JUL *", "cron(*/15 8-18 * JAN,JUL ? *)"),
        ("@hourly", "cron(0 * * * ? *)"),
    ] {
        let expr = parse_cron(posix).unwrap();
        assert_eq!(
            eventbridge_expression(&expr).as_deref(),
            Some(eventbridge),
            "{posix}"
        );
    }
}

// croner reads an empty list item as matching nothing, so the next-fire search walked minute by
// minute for tens of seconds before giving up (found by the `recurring_schedule` fuzz target).
#[test]
fn a_list_with_an_empty_item_is_refused_with_its_field() {
    for (text, field, position) in [
        (", * * * *", "minute", 0),
        ("1,,2 * * * *", "minute", 0),
        ("* * * * 1,", "day of week", 8),
        ("0 ,5 * * * *", "minute", 2),
    ] {
        let error = parse_cron(text).unwrap_err();
        assert_eq!(error.position, position, "{text}: {error:?}");
        assert!(
            error.message.contains(field) && error.message.contains("empty item"),
            "{text}: {}",
            error.message
        );
    }
}

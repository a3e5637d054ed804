//! Reading a `POST /v1/scheduled` body that carries `schedule` instead of `scheduled_at`: which
//! of the two it is (exactly one), and every rule of the `schedule` object, each refusal naming
//! its `param`.

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::clock::{Timestamp, format_rfc3339, parse_rfc3339};
use crate::error::ServiceError;
use crate::jobs::scheduled::{ScheduledRun, parse_endpoint, parse_scheduled_run};
use crate::metadata::Metadata;
use crate::recurring::cron::{parse_cron, parse_zone, shortest_interval};
use crate::recurring::{CatchUpPolicy, OverlapPolicy, Recurrence};

/// Fire times looked at to measure a schedule's shortest interval.
const INTERVAL_SAMPLE: usize = 16;

/// The zone of a schedule that names none (or `null`): UTC, as EventBridge Scheduler evaluates
/// a schedule expression given no `ScheduleExpressionTimezone`, and as a bare cron line reads.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Which kind of scheduled job a body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledKind {
    /// `scheduled_at`: one run at that time (or a body too broken to tell: the one-time reader
    /// reports what is wrong with it).
    Once,
    /// `schedule`: a run at every fire time.
    Recurring,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    scheduled_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    schedule: Option<&'a RawValue>,
}

fn given(raw: Option<&RawValue>) -> bool {
    raw.is_some_and(|r| r.get() != "null")
}

/// Exactly one of `scheduled_at` and `schedule` (neither is left to the one-time reader).
pub fn scheduled_kind(body: &[u8]) -> Result<ScheduledKind, ServiceError> {
    // Only an object says which it is (serde would read an array's items as the fields); the
    // one-time reader answers anything else with invalid_json.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Ok(ScheduledKind::Once);
    }
    let Ok(peek) = serde_json::from_slice::<Peek<'_>>(body) else {
        return Ok(ScheduledKind::Once);
    };
    match (given(peek.scheduled_at), given(peek.schedule)) {
        (true, false) => Ok(ScheduledKind::Once),
        (false, true) => Ok(ScheduledKind::Recurring),
        (true, true) => Err(ServiceError::invalid(
            "Give either 'scheduled_at' (one run) or 'schedule' (recurring runs), not both.",
            Some("schedule"),
            Some("conflicting_parameters"),
        )),
        // Neither: the one-time reader names what is wrong (an unknown field before the
        // missing `scheduled_at`, whose message offers `schedule` too).
        (false, false) => Ok(ScheduledKind::Once),
    }
}

/// A validated recurring create request.
#[derive(Debug, Clone, PartialEq)]
pub struct RecurringRequest {
    pub recurrence: Recurrence,
    pub endpoint: crate::ApiEndpoint,
    pub request: Bytes,
    pub model: String,
    pub metadata: Option<Metadata>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(borrow)]
    schedule: &'a RawValue,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    endpoint: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Schedule {
    #[serde(default)]
    cron: Option<serde_json::Value>,
    #[serde(default)]
    timezone: Option<serde_json::Value>,
    #[serde(default)]
    start_at: Option<serde_json::Value>,
    #[serde(default)]
    end_at: Option<serde_json::Value>,
    #[serde(default)]
    max_runs: Option<serde_json::Value>,
    #[serde(default)]
    overlap: Option<serde_json::Value>,
    #[serde(default)]
    catch_up: Option<serde_json::Value>,
}

fn invalid(param: &str, code: &str, message: String) -> ServiceError {
    ServiceError::invalid(message, Some(param), Some(code))
}

fn text<'v>(
    value: Option<&'v serde_json::Value>,
    param: &str,
) -> Result<Option<&'v str>, ServiceError> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(
            param,
            "invalid_type",
            format!("Invalid type for '{param}': expected a string."),
        )),
    }
}

fn time(value: Option<&serde_json::Value>, param: &str) -> Result<Option<Timestamp>, ServiceError> {
    text(value, param)?
        .map(|t| {
            parse_rfc3339(t).ok_or_else(|| {
                invalid(
                    param,
                    "invalid_value",
                    format!("Invalid '{param}': '{t}' is not an RFC 3339 time with an offset such as 2026-04-05T09:00:00Z."),
                )
            })
        })
        .transpose()
}

/// Validates a recurring `POST /v1/scheduled` body. `min_interval` is the shortest gap allowed
/// between fire times (under a minute only where a deployment allows a seconds field).
pub fn parse_recurring_request(
    body: &[u8],
    now: Timestamp,
    min_interval: Duration,
) -> Result<RecurringRequest, ServiceError> {
    let parsed: Body<'_> = serde_json::from_slice(body).map_err(|e| {
        ServiceError::invalid(
            format!("Unrecognized or invalid request argument: {e}. Expected 'schedule', 'request' and optionally 'endpoint' and 'metadata'."),
            None,
            Some("unknown_parameter"),
        )
    })?;
    let recurrence = parse_schedule(parsed.schedule, now, min_interval)?;
    let endpoint = parse_endpoint(parsed.endpoint)?;
    let ScheduledRun {
        request,
        model,
        metadata,
    } = parse_scheduled_run(endpoint, parsed.request, parsed.metadata)?;
    Ok(RecurringRequest {
        recurrence,
        endpoint,
        request,
        model,
        metadata,
    })
}

fn parse_schedule(
    raw: &RawValue,
    now: Timestamp,
    min_interval: Duration,
) -> Result<Recurrence, ServiceError> {
    let schedule: Schedule = serde_json::from_str(raw.get()).map_err(|e| {
        invalid(
            "schedule",
            "invalid_value",
            format!("Invalid 'schedule': {e}. Expected an object with 'cron' and optionally 'timezone' ({DEFAULT_TIMEZONE} when absent), 'start_at', 'end_at', 'max_runs', 'overlap', 'catch_up'."),
        )
    })?;
    let Some(cron_text) = text(schedule.cron.as_ref(), "schedule.cron")? else {
        return Err(invalid(
            "schedule.cron",
            "missing_required_parameter",
            "Missing required parameter: 'schedule.cron' (5 fields: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\").".into(),
        ));
    };
    let cron = parse_cron(cron_text).map_err(|e| {
        invalid(
            "schedule.cron",
            "invalid_cron",
            format!("Invalid 'schedule.cron': {}", e.message),
        )
    })?;
    let timezone =
        text(schedule.timezone.as_ref(), "schedule.timezone")?.unwrap_or(DEFAULT_TIMEZONE);
    let zone = parse_zone(timezone).ok_or_else(|| {
        invalid(
            "schedule.timezone",
            "unknown_timezone",
            format!("Invalid 'schedule.timezone': '{timezone}' is not an IANA time zone (such as Europe/Berlin or UTC)."),
        )
    })?;
    if cron.has_seconds() && min_interval >= Duration::from_secs(60) {
        return Err(invalid(
            "schedule.cron",
            "interval_too_short",
            format!(
                "Invalid 'schedule.cron': '{cron_text}' has a seconds field; schedules fire at most once a minute, so use 5 fields."
            ),
        ));
    }
    if let Some(shortest) = shortest_interval(&cron, zone, now, INTERVAL_SAMPLE)
        && shortest < min_interval
    {
        return Err(invalid(
            "schedule.cron",
            "interval_too_short",
            format!(
                "Invalid 'schedule.cron': '{cron_text}' fires {} s apart; the shortest interval allowed is {} s.",
                shortest.as_secs(),
                min_interval.as_secs()
            ),
        ));
    }
    let start_at = time(schedule.start_at.as_ref(), "schedule.start_at")?;
    let end_at = time(schedule.end_at.as_ref(), "schedule.end_at")?;
    if let (Some(start), Some(end)) = (start_at, end_at)
        && end <= start
    {
        return Err(invalid(
            "schedule.end_at",
            "end_before_start",
            format!(
                "Invalid 'schedule.end_at': {} is not after 'schedule.start_at' {}.",
                format_rfc3339(end),
                format_rfc3339(start)
            ),
        ));
    }
    if let Some(end) = end_at.filter(|end| *end <= now) {
        return Err(invalid(
            "schedule.end_at",
            "end_in_past",
            format!(
                "Invalid 'schedule.end_at': {} is in the past.",
                format_rfc3339(end)
            ),
        ));
    }
    let max_runs = match &schedule.max_runs {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .filter(|n| *n >= 1)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    invalid(
                        "schedule.max_runs",
                        "invalid_value",
                        "Invalid 'schedule.max_runs': expected a whole number of at least 1."
                            .into(),
                    )
                })?,
        ),
    };
    let overlap = match text(schedule.overlap.as_ref(), "schedule.overlap")? {
        None => OverlapPolicy::default(),
        Some(s) => OverlapPolicy::parse(s).ok_or_else(|| {
            invalid(
                "schedule.overlap",
                "invalid_value",
                format!("Invalid 'schedule.overlap': '{s}'. Expected 'skip' or 'allow'."),
            )
        })?,
    };
    let catch_up = match text(schedule.catch_up.as_ref(), "schedule.catch_up")? {
        None => CatchUpPolicy::default(),
        Some(s) => CatchUpPolicy::parse(s).ok_or_else(|| {
            invalid(
                "schedule.catch_up",
                "invalid_value",
                format!("Invalid 'schedule.catch_up': '{s}'. Expected 'latest' or 'skip'."),
            )
        })?,
    };
    let recurrence = Recurrence {
        cron,
        timezone: timezone.to_owned(),
        zone,
        start_at,
        end_at,
        max_runs,
        overlap,
        catch_up,
    };
    if crate::recurring::decisions::first_fire(&recurrence, now, None).is_none() {
        return Err(invalid(
            "schedule.cron",
            "no_fire_time",
            format!(
                "Invalid 'schedule.cron': '{cron_text}' never fires between the start and 'schedule.end_at'."
            ),
        ));
    }
    Ok(recurrence)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_790_000_000_000);
    const MINUTE: Duration = Duration::from_secs(60);

    fn param_of(result: Result<RecurringRequest, ServiceError>) -> (String, String, String) {
        match result {
            Err(ServiceError::InvalidRequest {
                message,
                param,
                code,
            }) => (param.unwrap_or_default(), code.unwrap_or_default(), message),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    fn body(schedule: &str) -> Vec<u8> {
        format!(
            r#"{{"schedule": {schedule}, "request": {{"model": "m", "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn exactly_one_of_scheduled_at_and_schedule() {
        let both = br#"{"scheduled_at": "2026-04-05T09:00:00Z", "schedule": {}}"#;
        assert!(scheduled_kind(both).is_err());
        assert_eq!(
            scheduled_kind(&body("{}")).unwrap(),
            ScheduledKind::Recurring
        );
        assert_eq!(
            scheduled_kind(br#"{"scheduled_at": "x"}"#).unwrap(),
            ScheduledKind::Once
        );
        // Neither: the one-time reader reports it (or an unknown field first).
        assert_eq!(scheduled_kind(br#"{"x": 1}"#).unwrap(), ScheduledKind::Once);
        // Not an object: the one-time reader answers invalid_json.
        assert_eq!(
            scheduled_kind(br#"["a", {}]"#).unwrap(),
            ScheduledKind::Once
        );
    }

    #[test]
    fn a_valid_schedule_keeps_its_fields_and_defaults() {
        let parsed = parse_recurring_request(
            &body(r#"{"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin", "max_runs": 3}"#),
            NOW,
            MINUTE,
        )
        .unwrap();
        assert_eq!(parsed.model, "m");
        assert_eq!(parsed.endpoint, crate::ApiEndpoint::ChatCompletions);
        let r = parsed.recurrence;
        assert_eq!(
            (r.cron.as_str(), r.timezone.as_str()),
            ("0 9 * * 1-5", "Europe/Berlin")
        );
        assert_eq!(r.max_runs, Some(3));
        assert_eq!(
            (r.overlap, r.catch_up),
            (OverlapPolicy::Skip, CatchUpPolicy::Latest)
        );
    }

    #[test]
    fn a_schedule_without_a_timezone_fires_in_utc() {
        for schedule in [
            r#"{"cron": "0 9 * * *"}"#,
            r#"{"cron": "0 9 * * *", "timezone": null}"#,
        ] {
            let r = parse_recurring_request(&body(schedule), NOW, MINUTE)
                .unwrap()
                .recurrence;
            assert_eq!(r.timezone, DEFAULT_TIMEZONE, "{schedule}");
            assert_eq!(r.zone, chrono_tz::UTC, "{schedule}");
        }
    }

    #[test]
    fn each_bad_schedule_names_its_param() {
        for (schedule, param, code) in [
            (
                r#"{"timezone": "UTC"}"#,
                "schedule.cron",
                "missing_required_parameter",
            ),
            (
                r#"{"cron": "0 25 * * *", "timezone": "UTC"}"#,
                "schedule.cron",
                "invalid_cron",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": 1}"#,
                "schedule.timezone",
                "invalid_type",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": "Nowhere/Else"}"#,
                "schedule.timezone",
                "unknown_timezone",
            ),
            (
                r#"{"cron": "*/10 * * * * *", "timezone": "UTC"}"#,
                "schedule.cron",
                "interval_too_short",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": "UTC", "start_at": "2027-01-02T00:00:00Z", "end_at": "2027-01-01T00:00:00Z"}"#,
                "schedule.end_at",
                "end_before_start",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": "UTC", "end_at": "2020-01-01T00:00:00Z"}"#,
                "schedule.end_at",
                "end_in_past",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": "UTC", "max_runs": -1}"#,
                "schedule.max_runs",
                "invalid_value",
            ),
            (
                r#"{"cron": "0 9 * * *", "timezone": "UTC", "catch_up": "all"}"#,
                "schedule.catch_up",
                "invalid_value",
            ),
            (
                r#"{"cron": "0 0 30 2 *", "timezone": "UTC"}"#,
                "schedule.cron",
                "no_fire_time",
            ),
            (r#""daily""#, "schedule", "invalid_value"),
        ] {
            let (got_param, got_code, message) =
                param_of(parse_recurring_request(&body(schedule), NOW, MINUTE));
            assert_eq!(
                (got_param.as_str(), got_code.as_str()),
                (param, code),
                "{schedule}: {message}"
            );
        }
        // Under a minute apart is allowed where the deployment lowers the floor (tests).
        assert!(
            parse_recurring_request(
                &body(r#"{"cron": "*/10 * * * * *", "timezone": "UTC"}"#),
                NOW,
                Duration::from_secs(1)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_schedule_runs_the_endpoint_it_names_with_that_endpoints_rules() {
        let schedule = r#"{"cron": "0 9 * * *", "timezone": "UTC"}"#;
        let responses = format!(
            r#"{{"schedule": {schedule}, "endpoint": "/v1/responses", "request": {{"model": "m", "input": "hi"}}}}"#
        );
        let parsed = parse_recurring_request(responses.as_bytes(), NOW, MINUTE).unwrap();
        assert_eq!(parsed.endpoint, crate::ApiEndpoint::Responses);
        assert_eq!(parsed.model, "m");
        let chat_body = format!(
            r#"{{"schedule": {schedule}, "endpoint": "/v1/embeddings", "request": {{"model": "m", "messages": []}}}}"#
        );
        let (param, code, _) = param_of(parse_recurring_request(chat_body.as_bytes(), NOW, MINUTE));
        assert_eq!(
            (param.as_str(), code.as_str()),
            ("request.input", "missing_required_parameter")
        );
        let unknown =
            format!(r#"{{"schedule": {schedule}, "endpoint": "/v1/images", "request": {{}}}}"#);
        let (param, _, _) = param_of(parse_recurring_request(unknown.as_bytes(), NOW, MINUTE));
        assert_eq!(param, "endpoint");
    }
}

//! Scheduled requests: reading a create request (`scheduled_at`, `request`, `metadata`, and the
//! `endpoint` it calls, chat completions unless named) and
//! the rules of `scheduled_at` (an RFC 3339 time with an offset, not too far past or ahead).

use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::clock::{Timestamp, format_rfc3339, parse_rfc3339};
use crate::endpoint::ApiEndpoint;
use crate::error::ServiceError;
use crate::metadata::{Metadata, parse_metadata};
use crate::requests::summarize_request;

/// How far in the past `scheduled_at` may be (clock skew, a slow client): such a job runs at once.
pub const MAX_PAST: Duration = Duration::from_secs(60);

/// A validated create request.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleRequest {
    pub scheduled_at: Timestamp,
    pub endpoint: ApiEndpoint,
    /// The body for `endpoint`, byte for byte as sent.
    pub request: Bytes,
    pub model: String,
    pub metadata: Option<Metadata>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body<'a> {
    #[serde(borrow, default)]
    scheduled_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request: Option<&'a RawValue>,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
    #[serde(borrow, default)]
    endpoint: Option<&'a RawValue>,
}

/// Validates a `POST /v1/scheduled` body. `horizon` bounds how far ahead a job may be scheduled.
/// The model is not checked against the routes here: that needs the upstream.
pub fn parse_schedule_request(
    body: &[u8],
    now: Timestamp,
    horizon: Duration,
) -> Result<ScheduleRequest, ServiceError> {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed: Body<'_> = match serde_json::from_slice(body) {
        Ok(b) if is_object => b,
        Err(e) if e.is_data() && is_object && crate::json_strict::is_well_formed(body) => {
            // The only data error an object can cause here is an unknown field.
            return Err(ServiceError::invalid(
                format!(
                    "Unrecognized request argument supplied: {e}. Expected 'scheduled_at' (or 'schedule' for recurring runs), 'request' and optionally 'endpoint' and 'metadata'."
                ),
                None,
                Some("unknown_parameter"),
            ));
        }
        _ => {
            return Err(ServiceError::invalid(
                "We could not parse the JSON body of your request: expected a JSON object.",
                None,
                Some("invalid_json"),
            ));
        }
    };
    let scheduled_at = parse_scheduled_at(parsed.scheduled_at, now, horizon)?;
    let endpoint = parse_endpoint(parsed.endpoint)?;
    let ScheduledRun {
        request,
        model,
        metadata,
    } = parse_scheduled_run(endpoint, parsed.request, parsed.metadata)?;
    Ok(ScheduleRequest {
        scheduled_at,
        endpoint,
        request,
        model,
        metadata,
    })
}

/// The endpoint a scheduled job (one-time or recurring) calls: chat completions unless
/// `endpoint` names another.
pub(crate) fn parse_endpoint(raw: Option<&RawValue>) -> Result<ApiEndpoint, ServiceError> {
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Ok(ApiEndpoint::ChatCompletions);
    };
    serde_json::from_str::<&str>(raw.get())
        .ok()
        .and_then(ApiEndpoint::from_path)
        .ok_or_else(|| {
            let supported: Vec<&str> = ApiEndpoint::ALL.iter().map(|e| e.path()).collect();
            ServiceError::invalid(
                format!(
                    "Invalid 'endpoint': expected one of '{}'.",
                    supported.join("', '")
                ),
                Some("endpoint"),
                Some("invalid_value"),
            )
        })
}

/// What every scheduled create runs, one-time or recurring: its `request` (a non-streaming body
/// for its endpoint, kept byte for byte) and its `metadata`.
pub(crate) struct ScheduledRun {
    pub request: Bytes,
    pub model: String,
    pub metadata: Option<Metadata>,
}

/// Validates a scheduled create's `request` and `metadata`, each refusal naming its `param`.
pub(crate) fn parse_scheduled_run(
    endpoint: ApiEndpoint,
    request: Option<&RawValue>,
    metadata: Option<&RawValue>,
) -> Result<ScheduledRun, ServiceError> {
    let Some(request) = request.filter(|r| r.get() != "null") else {
        return Err(ServiceError::invalid(
            "Missing required parameter: 'request' (the request body to run).",
            Some("request"),
            Some("missing_required_parameter"),
        ));
    };
    let summary =
        summarize_request(endpoint, request.get().as_bytes()).map_err(nest_under_request)?;
    if summary.stream {
        return Err(ServiceError::invalid(
            "Streaming is not supported for scheduled requests; remove 'stream' from 'request'.",
            Some("request.stream"),
            Some("streaming_unsupported"),
        ));
    }
    Ok(ScheduledRun {
        request: Bytes::copy_from_slice(request.get().as_bytes()),
        model: summary.model,
        metadata: metadata.map(parse_metadata).transpose()?.flatten(),
    })
}

/// The request body's own errors, with `param` naming where they sit in this request.
pub(crate) fn nest_under_request(error: ServiceError) -> ServiceError {
    match error {
        ServiceError::InvalidRequest {
            message,
            param,
            code,
        } => ServiceError::InvalidRequest {
            message: format!("Invalid 'request': {message}"),
            param: Some(param.map_or_else(|| "request".to_owned(), |p| format!("request.{p}"))),
            code,
        },
        other => other,
    }
}

pub(crate) fn parse_scheduled_at(
    raw: Option<&RawValue>,
    now: Timestamp,
    horizon: Duration,
) -> Result<Timestamp, ServiceError> {
    let invalid = |message: String, code: &str| {
        ServiceError::invalid(message, Some("scheduled_at"), Some(code))
    };
    let Some(raw) = raw.filter(|r| r.get() != "null") else {
        return Err(invalid(
            "Missing required parameter: 'scheduled_at' (an RFC 3339 time with an offset, e.g. 2026-04-05T09:00:00Z, for one run) or 'schedule' (a cron expression and time zone, for recurring runs).".into(),
            "missing_required_parameter",
        ));
    };
    let Ok(text) = serde_json::from_str::<String>(raw.get()) else {
        return Err(invalid(
            "Invalid type for 'scheduled_at': expected an RFC 3339 string such as 2026-04-05T09:00:00Z.".into(),
            "invalid_type",
        ));
    };
    let at = parse_rfc3339(&text).ok_or_else(|| {
        if has_offset(&text) {
            invalid(
                format!("Invalid 'scheduled_at': '{text}' is not an RFC 3339 time such as 2026-04-05T09:00:00Z."),
                "invalid_scheduled_at",
            )
        } else {
            invalid(
                format!("Invalid 'scheduled_at': '{text}' has no UTC offset; add 'Z' or one such as '+02:00'."),
                "invalid_scheduled_at",
            )
        }
    })?;
    if at < now.minus(MAX_PAST) {
        return Err(invalid(
            format!(
                "Invalid 'scheduled_at': {} is more than {} s in the past.",
                format_rfc3339(at),
                MAX_PAST.as_secs()
            ),
            "scheduled_at_in_past",
        ));
    }
    if at > now.plus(horizon) {
        return Err(invalid(
            format!(
                "Invalid 'scheduled_at': {} is more than {} days ahead.",
                format_rfc3339(at),
                horizon.as_secs() / 86_400
            ),
            "scheduled_at_too_far",
        ));
    }
    Ok(at)
}

/// Whether the text ends like an RFC 3339 offset (`Z` or `±hh:mm`), to tell a missing offset
/// apart from an unreadable time in the error message.
fn has_offset(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.last().is_some_and(|b| b.eq_ignore_ascii_case(&b'z')) {
        return true;
    }
    bytes.len() >= 6
        && matches!(bytes[bytes.len() - 6], b'+' | b'-')
        && bytes[bytes.len() - 3] == b':'
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp(1_790_000_000_000);
    const YEAR: Duration = Duration::from_secs(365 * 86_400);

    fn body(scheduled_at: &str) -> Vec<u8> {
        format!(
            r#"{{"scheduled_at": {scheduled_at}, "request": {{"model": "m", "messages": [{{"role": "user", "content": "hi"}}]}}}}"#
        )
        .into_bytes()
    }

    fn param_of(result: Result<ScheduleRequest, ServiceError>) -> (Option<String>, Option<String>) {
        match result {
            Err(ServiceError::InvalidRequest { param, code, .. }) => (param, code),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn times_with_offsets_are_normalised_to_utc() {
        let at = format_rfc3339(NOW.plus(Duration::from_secs(3600)));
        let shifted = parse_rfc3339(&at.replace('Z', "+00:00")).unwrap();
        assert_eq!(format_rfc3339(shifted), at);
        assert_eq!(
            parse_rfc3339("2026-04-05T11:00:00+02:00"),
            parse_rfc3339("2026-04-05T09:00:00Z")
        );
        assert_eq!(format_rfc3339(Timestamp(1_500)), "1970-01-01T00:00:01.500Z");
    }

    #[test]
    fn a_valid_request_keeps_the_chat_body_byte_for_byte() {
        let at = format_rfc3339(NOW.plus(Duration::from_secs(60)));
        let parsed = parse_schedule_request(&body(&format!("\"{at}\"")), NOW, YEAR).unwrap();
        assert_eq!(parsed.model, "m");
        assert_eq!(
            parsed.request.as_ref(),
            br#"{"model": "m", "messages": [{"role": "user", "content": "hi"}]}"#
        );
    }

    #[test]
    fn an_unknown_field_is_named_only_in_a_body_that_is_json() {
        let (_, code) = param_of(parse_schedule_request(br#"{"priority": 1}"#, NOW, YEAR));
        assert_eq!(code.as_deref(), Some("unknown_parameter"));
        let (_, code) = param_of(parse_schedule_request(br#"{"priority": 1, "#, NOW, YEAR));
        assert_eq!(code.as_deref(), Some("invalid_json"));
    }

    #[test]
    fn each_bad_scheduled_at_names_the_param() {
        let past = format_rfc3339(NOW.minus(Duration::from_secs(120)));
        let far = format_rfc3339(NOW.plus(YEAR + Duration::from_secs(3600)));
        for (value, code) in [
            ("null", "missing_required_parameter"),
            ("12", "invalid_type"),
            ("\"tomorrow\"", "invalid_scheduled_at"),
            ("\"2026-04-05T09:00:00\"", "invalid_scheduled_at"),
            (&format!("\"{past}\""), "scheduled_at_in_past"),
            (&format!("\"{far}\""), "scheduled_at_too_far"),
        ] {
            let (param, got) = param_of(parse_schedule_request(&body(value), NOW, YEAR));
            assert_eq!(param.as_deref(), Some("scheduled_at"), "{value}");
            assert_eq!(got.as_deref(), Some(code), "{value}");
        }
    }

    #[test]
    fn a_bad_chat_body_is_reported_under_request() {
        let at = format_rfc3339(NOW);
        let missing = format!(r#"{{"scheduled_at": "{at}"}}"#);
        let (param, _) = param_of(parse_schedule_request(missing.as_bytes(), NOW, YEAR));
        assert_eq!(param.as_deref(), Some("request"));
        let no_messages = format!(r#"{{"scheduled_at": "{at}", "request": {{"model": "m"}}}}"#);
        let (param, _) = param_of(parse_schedule_request(no_messages.as_bytes(), NOW, YEAR));
        assert_eq!(param.as_deref(), Some("request.messages"));
        let streamed = format!(
            r#"{{"scheduled_at": "{at}", "request": {{"model": "m", "stream": true, "messages": [{{"role": "user", "content": "x"}}]}}}}"#
        );
        let (param, code) = param_of(parse_schedule_request(streamed.as_bytes(), NOW, YEAR));
        assert_eq!(param.as_deref(), Some("request.stream"));
        assert_eq!(code.as_deref(), Some("streaming_unsupported"));
    }
}

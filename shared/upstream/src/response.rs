//! Reading what an upstream answered: retry hints, OpenAI-shaped error bodies, the completion
//! check, and which headers a relay passes on.

use std::error::Error as _;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use prism_core::jobs::JobError;
use prism_core::ports::{Completion, UpstreamError};
use reqwest::header::HeaderMap;
use serde_json::Value;

/// The longest wait a `retry-after` hint may ask for; a larger (or garbled) value must not park a
/// job for hours.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 60);

/// Error bodies beyond this are cut off: they only feed a message, and a misbehaving upstream
/// must not make a worker buffer megabytes.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// Headers a relay passes on as they are; `x-ratelimit-*` and `x-request-id` are handled apart.
const RELAYED: [&str; 4] = [
    "content-type",
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
];

/// The provider's request id is renamed so it cannot be mistaken for Prism's own.
const UPSTREAM_REQUEST_ID: &str = "x-upstream-request-id";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

/// `retry-after-ms` (float milliseconds, OpenAI's finer hint) wins over `retry-after` (float
/// seconds or an HTTP-date); a malformed one falls through to the next.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let from_ms = header(headers, "retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|ms| capped_secs(ms / 1000.0));
    from_ms.or_else(|| {
        let value = header(headers, "retry-after")?;
        match value.parse::<f64>() {
            Ok(secs) => capped_secs(secs),
            Err(_) => {
                let at = httpdate::parse_http_date(value).ok()?;
                // A date already past means "now", not "no hint".
                let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
                Some(wait.min(MAX_RETRY_AFTER))
            }
        }
    })
}

fn capped_secs(secs: f64) -> Option<Duration> {
    // `f64::parse` accepts "inf" and "NaN"; neither is a usable wait.
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())).ok()
}

pub(crate) fn should_retry(headers: &HeaderMap) -> Option<bool> {
    let value = header(headers, "x-should-retry")?;
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `{"error":{"message","type","code"}}`, as OpenAI and most compatible providers send it.
/// Lenient where providers differ: a missing `type` becomes `upstream_error` and a numeric `code`
/// is kept as text.
pub(crate) fn job_error(body: &[u8]) -> Option<JobError> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let error = value.get("error")?.as_object()?;
    let message = error.get("message")?.as_str()?;
    let kind = error
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("upstream_error");
    let code = match error.get("code") {
        Some(Value::String(code)) => Some(code.clone()),
        Some(Value::Number(code)) => Some(code.to_string()),
        _ => None,
    };
    Some(JobError {
        message: message.to_owned(),
        kind: kind.to_owned(),
        code,
    })
}

/// A 2xx body is stored and served byte for byte later, so it is checked to be one JSON object
/// but never re-serialized.
pub(crate) fn completion(body: Bytes) -> Result<Completion, UpstreamError> {
    let starts_as_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !starts_as_object {
        return Err(UpstreamError::InvalidResponse(
            "body is not a JSON object".to_owned(),
        ));
    }
    // `IgnoredAny` checks the syntax (including trailing garbage) without building a tree.
    serde_json::from_slice::<serde::de::IgnoredAny>(&body)
        .map_err(|e| UpstreamError::InvalidResponse(format!("body is not valid JSON: {e}")))?;
    let body = String::from_utf8(Vec::from(body))
        .map_err(|_| UpstreamError::InvalidResponse("body is not valid UTF-8".to_owned()))?;
    Ok(Completion { body })
}

pub(crate) fn relay_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            // Names come lower-cased from `http`, so plain comparisons suffice.
            let name = name.as_str();
            let out = if RELAYED.contains(&name) || name.starts_with("x-ratelimit-") {
                name
            } else if name == "x-request-id" {
                UPSTREAM_REQUEST_ID
            } else {
                return None;
            };
            // A value that is not visible ASCII cannot be re-emitted safely as a string; none of
            // these headers legitimately carries one.
            let value = value.to_str().ok()?;
            Some((out.to_owned(), value.to_owned()))
        })
        .collect()
}

/// A reqwest error with its causes, minus the URL (a base URL may carry credentials in a query).
pub(crate) fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_prefers_ms_then_seconds_then_dates() {
        let now = SystemTime::now();
        let ms = headers(&[("retry-after-ms", "250.5"), ("retry-after", "9")]);
        assert_eq!(retry_after(&ms, now), Some(Duration::from_micros(250_500)));

        let garbled_ms = headers(&[("retry-after-ms", "soon"), ("retry-after", "1.5")]);
        assert_eq!(
            retry_after(&garbled_ms, now),
            Some(Duration::from_millis(1500))
        );

        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let dated = headers(&[("retry-after", &date)]);
        let wait = retry_after(&dated, now).unwrap();
        // HTTP-dates have whole-second resolution.
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30));

        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&[("retry-after", &past)]), now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn retry_after_rejects_nonsense_and_caps_huge_waits() {
        let now = SystemTime::now();
        for bad in ["-1", "NaN", "inf", "tomorrow", ""] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", bad)]), now),
                None,
                "{bad}"
            );
        }
        for huge in ["1e300", "86400"] {
            assert_eq!(
                retry_after(&headers(&[("retry-after", huge)]), now),
                Some(MAX_RETRY_AFTER)
            );
        }
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn error_bodies_parse_leniently_but_only_in_openai_shape() {
        let full = br#"{"error":{"message":"slow down","type":"requests","code":"rate_limit_exceeded","param":null}}"#;
        assert_eq!(
            job_error(full),
            Some(JobError::new(
                "slow down",
                "requests",
                Some("rate_limit_exceeded")
            ))
        );
        let numeric = br#"{"error":{"message":"m","code":429}}"#;
        assert_eq!(
            job_error(numeric),
            Some(JobError::new("m", "upstream_error", Some("429")))
        );
        for not_openai in [
            &b"upstream overloaded"[..],
            br#"{"error":"boom"}"#,
            br#"{"message":"boom"}"#,
            br#"{"error":{"type":"x"}}"#,
        ] {
            assert_eq!(job_error(not_openai), None);
        }
    }

    #[test]
    fn completion_accepts_only_a_whole_json_object() {
        let raw = " {\"id\":1, \"x\" : [true]}\n";
        assert_eq!(
            completion(Bytes::from_static(raw.as_bytes())).unwrap().body,
            raw
        );
        for bad in ["", "[1]", "\"s\"", "{\"id\":", "{} {}", "{}x"] {
            assert!(
                matches!(
                    completion(Bytes::from_static(bad.as_bytes())),
                    Err(UpstreamError::InvalidResponse(_))
                ),
                "{bad:?}"
            );
        }
    }
}

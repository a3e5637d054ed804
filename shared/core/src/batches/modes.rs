//! How a provider runs the batch lines routed to it ([`BatchMode`], listed once), and the flex
//! tier's rules: the body a flex line is sent with, and what a flex line does after its
//! provider turned it away ([`after_flex_failure`]).

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::ports::UpstreamError;

/// A provider's batch execution mode (config `batch = "gateway" | "native" | "flex"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum BatchMode {
    /// Prism runs every line itself as an ordinary call, at the standard tier.
    #[default]
    Gateway,
    /// The provider's own Files + Batch API runs the lines (the provider's batch discount).
    Native,
    /// Prism runs every line itself with `service_tier: "flex"` (billed at batch rates).
    Flex,
}

impl BatchMode {
    pub const ALL: [BatchMode; 3] = [BatchMode::Gateway, BatchMode::Native, BatchMode::Flex];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchMode::Gateway => "gateway",
            BatchMode::Native => "native",
            BatchMode::Flex => "flex",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|mode| mode.as_str() == name)
    }
}

/// What a flex line does when the provider answers 429 "resource unavailable" (config
/// `flex_fallback`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum FlexFallback {
    /// Stay on the flex tier and try again later, for as long as the batch's window allows.
    #[default]
    Retry,
    /// Send the line again at once at the standard tier (full price, no wait).
    Standard,
}

impl FlexFallback {
    pub const ALL: [FlexFallback; 2] = [FlexFallback::Retry, FlexFallback::Standard];

    pub fn as_str(self) -> &'static str {
        match self {
            FlexFallback::Retry => "retry",
            FlexFallback::Standard => "standard",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

/// Where a model's batch lines go: the provider that serves it and how that provider runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRoute {
    pub provider: String,
    pub mode: BatchMode,
    pub flex_fallback: FlexFallback,
}

/// The tier a gateway-run line is sent at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Standard,
    Flex,
}

/// The value OpenAI's `service_tier` takes for the flex tier.
pub const FLEX_SERVICE_TIER: &str = "flex";

/// A line's body with `service_tier: "flex"` set (replacing any tier the caller chose: the
/// operator picked flex for this provider). A body that is not a JSON object is sent as it is;
/// validation has already let only objects through.
pub fn flex_body(body: &Bytes) -> Bytes {
    match serde_json::from_slice::<Map<String, Value>>(body) {
        Ok(mut object) => {
            object.insert(
                "service_tier".to_owned(),
                Value::String(FLEX_SERVICE_TIER.to_owned()),
            );
            serde_json::to_vec(&object).map_or_else(|_| body.clone(), Bytes::from)
        }
        Err(_) => body.clone(),
    }
}

/// Whether a failure is the flex tier's "resource unavailable": a 429 that is not a quota or
/// rate limit but the provider having no flex capacity now (not billed).
pub fn is_resource_unavailable(error: &UpstreamError) -> bool {
    let UpstreamError::Status {
        status: 429,
        error: Some(shown),
        ..
    } = error
    else {
        return false;
    };
    shown.code.as_deref() == Some("resource_unavailable")
        || shown.kind == "resource_unavailable"
        || shown
            .message
            .to_ascii_lowercase()
            .contains("resource unavailable")
}

/// What a flex line does after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlexStep {
    /// Not the flex tier's refusal: the ordinary retry rules apply.
    Ordinary,
    /// Try again at the flex tier after a backoff; like a rate limit, it is bounded by the
    /// batch's window rather than by `max_attempts`.
    RetryLater,
    /// Send again at once at the standard tier; the refusal costs no attempt.
    SendStandard,
}

/// The flex policy: a "resource unavailable" refusal of a flex-tier attempt retries later or
/// falls back to the standard tier, as configured; everything else (including a refusal of a
/// standard-tier attempt) follows the ordinary rules.
pub fn after_flex_failure(error: &UpstreamError, tier: Tier, fallback: FlexFallback) -> FlexStep {
    if tier != Tier::Flex || !is_resource_unavailable(error) {
        return FlexStep::Ordinary;
    }
    match fallback {
        FlexFallback::Retry => FlexStep::RetryLater,
        FlexFallback::Standard => FlexStep::SendStandard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::JobError;

    fn refusal(code: Option<&str>, message: &str) -> UpstreamError {
        UpstreamError::Status {
            status: 429,
            error: Some(JobError::new(message, "invalid_request_error", code)),
            retry_after: None,
            should_retry: None,
        }
    }

    #[test]
    fn modes_and_fallbacks_round_trip_by_name() {
        for mode in BatchMode::ALL {
            assert_eq!(BatchMode::parse(mode.as_str()), Some(mode));
        }
        for fallback in FlexFallback::ALL {
            assert_eq!(FlexFallback::parse(fallback.as_str()), Some(fallback));
        }
        assert_eq!(BatchMode::parse("batch"), None);
        assert_eq!(BatchMode::default(), BatchMode::Gateway);
        assert_eq!(FlexFallback::default(), FlexFallback::Retry);
    }

    #[test]
    fn flex_body_sets_the_tier_and_keeps_every_other_field() {
        let body = Bytes::from_static(br#"{"model":"m","messages":[],"service_tier":"auto"}"#);
        let sent: Value = serde_json::from_slice(&flex_body(&body)).unwrap();
        assert_eq!(sent["service_tier"], "flex");
        assert_eq!(sent["model"], "m");
        assert_eq!(sent["messages"], Value::Array(vec![]));
        let not_an_object = Bytes::from_static(b"[1]");
        assert_eq!(flex_body(&not_an_object), not_an_object);
    }

    #[test]
    fn resource_unavailable_is_told_apart_from_rate_limits_and_quota() {
        assert!(is_resource_unavailable(&refusal(
            Some("resource_unavailable"),
            "x"
        )));
        assert!(is_resource_unavailable(&refusal(
            None,
            "Resource Unavailable: flex capacity"
        )));
        assert!(!is_resource_unavailable(&refusal(
            Some("rate_limit_exceeded"),
            "Rate limit reached"
        )));
        assert!(!is_resource_unavailable(&refusal(
            Some("insufficient_quota"),
            "quota"
        )));
        assert!(!is_resource_unavailable(&UpstreamError::Timeout));
    }

    #[test]
    fn a_flex_refusal_retries_later_or_falls_back_as_configured() {
        let busy = refusal(Some("resource_unavailable"), "Resource unavailable");
        assert_eq!(
            after_flex_failure(&busy, Tier::Flex, FlexFallback::Retry),
            FlexStep::RetryLater
        );
        assert_eq!(
            after_flex_failure(&busy, Tier::Flex, FlexFallback::Standard),
            FlexStep::SendStandard
        );
    }

    #[test]
    fn other_failures_and_standard_tier_attempts_follow_the_ordinary_rules() {
        let busy = refusal(Some("resource_unavailable"), "Resource unavailable");
        assert_eq!(
            after_flex_failure(&busy, Tier::Standard, FlexFallback::Standard),
            FlexStep::Ordinary
        );
        let limited = refusal(Some("rate_limit_exceeded"), "Rate limit reached");
        assert_eq!(
            after_flex_failure(&limited, Tier::Flex, FlexFallback::Standard),
            FlexStep::Ordinary
        );
        assert_eq!(
            after_flex_failure(&UpstreamError::Connect, Tier::Flex, FlexFallback::Retry),
            FlexStep::Ordinary
        );
    }
}

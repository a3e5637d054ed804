//! The one table from an upstream failure to the error a client is shown: the HTTP answer of a
//! sync call, the error a failed async or scheduled job reports, and the error of a batch output
//! line all come from [`client_error`], so the same failure reads the same everywhere. Also which
//! upstream failures are worth another try, and after how long the upstream asked to wait.

use std::time::Duration;

use crate::jobs::JobError;
use crate::ports::UpstreamError;

/// What a client is shown for an upstream failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// The gateway's HTTP status on a sync call. A batch line that failed with an upstream HTTP
    /// status keeps that status in its `response` instead.
    pub status: u16,
    /// The request field at fault, when the client's request is.
    pub param: Option<&'static str>,
    /// OpenAI's error shape: message, type and code.
    pub error: JobError,
}

/// The upstream's own error body and status pass through; our failures to reach or understand
/// it are 502 (504 for a timeout) with an `upstream_*` code; an unroutable model is the client's
/// 400 `model_not_found`.
pub fn client_error(error: &UpstreamError) -> ClientError {
    let gateway = |status, message: String, code| ClientError {
        status,
        param: None,
        error: JobError::new(message, "upstream_error", Some(code)),
    };
    match error {
        UpstreamError::Status {
            error: Some(upstream),
            ..
        } => ClientError {
            status: 502,
            param: None,
            error: upstream.clone(),
        },
        UpstreamError::Status { status, .. } => gateway(
            502,
            format!("The upstream provider answered HTTP {status}."),
            "upstream_error",
        ),
        UpstreamError::Timeout => gateway(
            504,
            "The upstream provider did not answer in time.".into(),
            "upstream_timeout",
        ),
        UpstreamError::Connect => gateway(
            502,
            "Could not connect to the upstream provider.".into(),
            "upstream_unreachable",
        ),
        UpstreamError::InvalidResponse(_) => gateway(
            502,
            "The upstream provider sent a response that is not a valid chat completion.".into(),
            "invalid_upstream_response",
        ),
        UpstreamError::NoRoute(model) => ClientError {
            status: 400,
            param: Some("model"),
            error: JobError::new(
                format!("The model '{model}' does not exist or you do not have access to it."),
                "invalid_request_error",
                Some("model_not_found"),
            ),
        },
    }
}

/// OpenAI's error body, `{"error": {"message", "type", "param", "code"}}`: what the HTTP layer
/// answers and what a failed batch line's `response.body` holds.
pub fn error_body(
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> serde_json::Value {
    serde_json::json!({"error": {
        "message": message,
        "type": kind,
        "param": param,
        "code": code,
    }})
}

impl UpstreamError {
    /// 429 (but not `insufficient_quota`), 408, 5xx, timeouts and broken connections are worth
    /// another try; the upstream's `x-should-retry` overrides the status.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Status {
                status,
                error,
                should_retry,
                ..
            } => {
                if let Some(explicit) = should_retry {
                    return *explicit;
                }
                let quota = error
                    .as_ref()
                    .and_then(|e| e.code.as_deref())
                    .is_some_and(|c| c == "insufficient_quota");
                (*status == 429 && !quota) || *status == 408 || *status >= 500
            }
            UpstreamError::Timeout | UpstreamError::Connect | UpstreamError::InvalidResponse(_) => {
                true
            }
            UpstreamError::NoRoute(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UpstreamError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The error a job reports when this was its last failure (see [`crate::upstream`]).
    pub fn to_job_error(&self) -> JobError {
        client_error(self).error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(error: &UpstreamError) -> (u16, Option<String>) {
        let c = client_error(error);
        (c.status, c.error.code)
    }

    #[test]
    fn an_invalid_upstream_response_reads_the_same_on_every_path() {
        assert_eq!(
            code(&UpstreamError::InvalidResponse("eof".into())),
            (502, Some("invalid_upstream_response".into()))
        );
    }

    #[test]
    fn a_timeout_is_a_504_and_an_unreachable_upstream_a_502() {
        assert_eq!(
            code(&UpstreamError::Timeout),
            (504, Some("upstream_timeout".into()))
        );
        assert_eq!(
            code(&UpstreamError::Connect),
            (502, Some("upstream_unreachable".into()))
        );
    }

    #[test]
    fn the_upstreams_own_error_passes_through() {
        let own = JobError::new("slow down", "rate_limit_error", Some("rate_limited"));
        let error = UpstreamError::Status {
            status: 429,
            error: Some(own.clone()),
            retry_after: None,
            should_retry: None,
        };
        assert_eq!(client_error(&error).error, own);
        let bare = UpstreamError::Status {
            status: 500,
            error: None,
            retry_after: None,
            should_retry: None,
        };
        assert_eq!(code(&bare), (502, Some("upstream_error".into())));
    }

    #[test]
    fn an_unroutable_model_is_the_clients_error_about_the_model_field() {
        let c = client_error(&UpstreamError::NoRoute("gpt-x".into()));
        assert_eq!((c.status, c.param), (400, Some("model")));
        assert_eq!(c.error.code.as_deref(), Some("model_not_found"));
        assert_eq!(c.error.kind, "invalid_request_error");
    }

    #[test]
    fn the_error_body_has_openais_four_fields() {
        let body = error_body("m", "t", None, Some("c"));
        assert_eq!(
            body,
            serde_json::json!({"error": {"message": "m", "type": "t", "param": null, "code": "c"}})
        );
    }
}

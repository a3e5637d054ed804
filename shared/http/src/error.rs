//! The HTTP boundary's one error type and its exhaustive mapping from domain errors to a status
//! and OpenAI's error body `{"error": {"message", "type", "param", "code"}}`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use prism_core::ports::UpstreamError;
use prism_core::upstream::{client_error, error_body};
use prism_core::{ServiceError, StoreError};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: String,
    pub param: Option<String>,
    pub code: Option<String>,
    /// Sent as `x-should-retry: false` so the SDKs do not repeat a request that cannot succeed.
    pub never_retry: bool,
    /// Sent as `retry-after` (seconds): when an overloaded server may be asked again.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            kind: kind.to_owned(),
            param: None,
            code: None,
            never_retry: false,
            retry_after_secs: None,
        }
    }

    pub fn param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    /// A request header Prism reads has a value it cannot accept.
    pub fn bad_header(name: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
            .param(name)
            .code("invalid_header_value")
    }

    /// The process holds as many request bytes as it may; the client should come back shortly.
    pub fn busy() -> Self {
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "The server is busy receiving other requests; try again shortly.",
        )
        .code("server_busy");
        error.retry_after_secs = Some(1);
        error
    }

    /// The client stopped sending its body for longer than the body read timeout.
    pub fn body_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            "The request body was not received in time.",
        )
        .code("request_timeout")
    }

    pub fn code(mut self, code: &str) -> Self {
        self.code = Some(code.to_owned());
        self
    }

    pub fn never_retry(mut self) -> Self {
        self.never_retry = true;
        self
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than the limit of {limit} bytes."),
        )
        .code("request_too_large")
        .never_retry()
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "The server had an error while processing your request.",
        )
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::InvalidRequest {
                message,
                param,
                code,
            } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message,
                kind: "invalid_request_error".to_owned(),
                param,
                code,
                never_retry: false,
                retry_after_secs: None,
            },
            ServiceError::TooLarge { message } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                message,
            )
            .code("file_too_large")
            .never_retry(),
            ServiceError::BatchConflict { status } => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("Cannot cancel a batch with status '{}'.", status.as_str()),
            )
            .never_retry(),
            ServiceError::RateLimited { message } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .code("too_many_active_batches")
            }
            ServiceError::NotFound { what: "model", id } => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("The model '{id}' does not exist"),
            )
            .param("model")
            .code("model_not_found"),
            ServiceError::NotFound { what, id } => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("No {what} found with id '{id}'."),
            ),
            ServiceError::Conflict { action, status } => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!("Cannot {action} a job with status '{}'.", status.as_str()),
            )
            .never_retry(),
            ServiceError::RecurringConflict { action, status } => ApiError::new(
                StatusCode::CONFLICT,
                "invalid_request_error",
                format!(
                    "Cannot {action} a recurring schedule with status '{}'.",
                    status.as_str()
                ),
            )
            .never_retry(),
            ServiceError::StateConflict {
                message,
                param,
                code,
            } => ApiError {
                status: StatusCode::CONFLICT,
                message,
                kind: "invalid_request_error".to_owned(),
                param,
                code: Some(code),
                never_retry: true,
                retry_after_secs: None,
            },
            ServiceError::Store(store) => {
                // Details go to the log once; the client gets a generic 5xx.
                tracing::error!(error = %store, "storage failure");
                match store {
                    StoreError::Unavailable(_) => ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        "The service is temporarily unable to store or read your request; try again.",
                    ),
                    // A record that cannot be read stays unreadable: a retry would fail alike.
                    StoreError::Corrupt(_) => ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        "The server could not read a stored record for this request; retrying \
                         will not help. Contact the operator with the request id.",
                    )
                    .never_retry(),
                }
            }
        }
    }
}

/// The one upstream table ([`prism_core::upstream`]) at the HTTP boundary.
impl From<UpstreamError> for ApiError {
    fn from(error: UpstreamError) -> Self {
        let shown = client_error(&error);
        ApiError {
            status: StatusCode::from_u16(shown.status).unwrap_or(StatusCode::BAD_GATEWAY),
            message: shown.error.message,
            kind: shown.error.kind,
            param: shown.param.map(str::to_owned),
            code: shown.error.code,
            never_retry: false,
            retry_after_secs: None,
        }
    }
}

/// axum's rejection of a path segment (an id that is not UTF-8): a client error in our shape.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        rejection_error(rejection.status(), rejection.body_text())
    }
}

/// axum's rejection of a query string.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        rejection_error(rejection.status(), rejection.body_text())
    }
}

/// axum's rejection enums are `non_exhaustive`, so they are mapped by the status they carry: a
/// 4xx keeps its text, anything else is our generic 500 (logged once).
fn rejection_error(status: StatusCode, text: String) -> ApiError {
    if status.is_client_error() {
        ApiError::new(status, "invalid_request_error", text).code("invalid_request")
    } else {
        tracing::error!(%status, text, "extractor failed");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = error_body(
            &self.message,
            &self.kind,
            self.param.as_deref(),
            self.code.as_deref(),
        );
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.never_retry {
            response
                .headers_mut()
                .insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_corrupt_record_is_a_500_that_says_not_to_retry() {
        let error = ApiError::from(ServiceError::Store(StoreError::Corrupt("bad".into())));
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(error.never_retry);
    }

    #[test]
    fn unavailable_storage_is_a_503_worth_retrying() {
        let error = ApiError::from(ServiceError::Store(StoreError::Unavailable("down".into())));
        assert_eq!(error.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!error.never_retry);
    }

    #[test]
    fn an_invalid_upstream_response_has_the_same_code_as_on_a_job() {
        let error = UpstreamError::InvalidResponse("eof".into());
        let job_code = error.to_job_error().code;
        let api = ApiError::from(error);
        assert_eq!(api.status, StatusCode::BAD_GATEWAY);
        assert_eq!(api.code, job_code);
        assert_eq!(api.code.as_deref(), Some("invalid_upstream_response"));
    }
}

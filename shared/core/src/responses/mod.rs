//! Responses API background mode: a `background: true` request is a job of kind
//! [`JobKind::Response`](crate::JobKind) on the durable job store. This module owns the one
//! mapping from job states to response statuses, what Prism reads of a Responses request, and
//! the response object a client polls; [`service`] is the HTTP API and [`events`] the recorded
//! stream of a `stream: true` background response.

pub mod events;
pub(crate) mod run;
pub mod service;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ServiceError;
use crate::jobs::{Job, JobStatus};

/// A response's `status`, with OpenAI's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseStatus {
    Queued,
    InProgress,
    Completed,
    Failed,
    Cancelled,
    Incomplete,
}

impl ResponseStatus {
    pub const ALL: [Self; 6] = [
        Self::Queued,
        Self::InProgress,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
        Self::Incomplete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InProgress => "in_progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Incomplete => "incomplete",
        }
    }
}

/// The status a background response reports for its job. A completed job whose upstream
/// response stopped early (`max_output_tokens`, a content filter) is `incomplete`, as at OpenAI.
pub fn response_status(status: JobStatus, result: Option<&Value>) -> ResponseStatus {
    match status {
        JobStatus::Pending => ResponseStatus::Queued,
        JobStatus::Running => ResponseStatus::InProgress,
        JobStatus::Completed => {
            match result.and_then(|r| r.get("status")).and_then(Value::as_str) {
                Some("incomplete") => ResponseStatus::Incomplete,
                _ => ResponseStatus::Completed,
            }
        }
        JobStatus::Failed => ResponseStatus::Failed,
        JobStatus::Cancelled => ResponseStatus::Cancelled,
    }
}

/// What Prism reads of a `POST /v1/responses` body; the rest is forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRequestSummary {
    pub model: String,
    pub stream: bool,
    pub background: bool,
}

#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    background: Option<Value>,
    #[serde(default)]
    store: Option<Value>,
}

/// Validates a Responses request: a JSON object with a model; `stream` and `background` booleans;
/// background mode needs `store` (OpenAI refuses stateless background requests too).
pub fn summarize_response_request(body: &[u8]) -> Result<ResponseRequestSummary, ServiceError> {
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let probe = match std::str::from_utf8(body).map(serde_json::from_str::<Probe>) {
        Ok(Ok(probe)) if is_object => probe,
        Ok(Ok(_)) | Ok(Err(_)) | Err(_) if !is_object => {
            return Err(ServiceError::invalid(
                "The request body must be a JSON object.",
                None,
                Some("invalid_json"),
            ));
        }
        _ => {
            return Err(ServiceError::invalid(
                "We could not parse the JSON body of your request.",
                None,
                Some("invalid_json"),
            ));
        }
    };
    let model = match probe.model {
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(ServiceError::invalid(
                "Invalid type for 'model': expected a non-empty string.",
                Some("model"),
                Some("invalid_type"),
            ));
        }
        None => {
            return Err(ServiceError::invalid(
                "Missing required parameter: 'model'.",
                Some("model"),
                Some("missing_required_parameter"),
            ));
        }
    };
    let stream = flag(probe.stream, "stream")?;
    let background = flag(probe.background, "background")?;
    if background && matches!(probe.store, Some(Value::Bool(false))) {
        return Err(ServiceError::invalid(
            "Background mode requires 'store' to be true.",
            Some("store"),
            Some("invalid_value"),
        ));
    }
    Ok(ResponseRequestSummary {
        model,
        stream,
        background,
    })
}

fn flag(value: Option<Value>, name: &str) -> Result<bool, ServiceError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(b),
        Some(_) => Err(ServiceError::invalid(
            format!("Invalid type for '{name}': expected a boolean."),
            Some(name),
            Some("invalid_type"),
        )),
    }
}

/// The body a background response's worker sends the provider: the client's, without
/// `background` (the provider must answer the call itself; Prism is the one keeping it) and
/// with `stream` only when the client asked for a recorded stream.
pub fn upstream_request(body: &[u8], stream: bool) -> Result<Bytes, ServiceError> {
    let mut object: Map<String, Value> = serde_json::from_slice(body).map_err(|_| {
        ServiceError::invalid(
            "We could not parse the JSON body of your request.",
            None,
            Some("invalid_json"),
        )
    })?;
    object.remove("background");
    object.remove("stream");
    if stream {
        object.insert("stream".to_owned(), Value::Bool(true));
    }
    serde_json::to_vec(&object)
        .map(Bytes::from)
        .map_err(|e| ServiceError::invalid(e.to_string(), None, Some("invalid_json")))
}

/// The response object for a background response as its job stands. A completed job returns
/// the provider's response under Prism's id; any other state is built from the job, with the
/// fields an SDK reads.
pub fn response_object(job: &Job) -> Value {
    let result: Option<Value> = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let status = response_status(job.status, result.as_ref());
    let mut object = match result {
        Some(Value::Object(map)) if job.status == JobStatus::Completed => map,
        _ => {
            let error = job.error.as_ref().map(|e| {
                json!({
                    "code": e.code.clone().unwrap_or_else(|| "server_error".to_owned()),
                    "message": e.message,
                })
            });
            let Value::Object(map) = json!({
                "error": error,
                "incomplete_details": null,
                "instructions": null,
                "metadata": {},
                "output": [],
                "parallel_tool_calls": true,
                "temperature": null,
                "tool_choice": "auto",
                "tools": [],
                "top_p": null,
                "usage": null,
            }) else {
                return Value::Null;
            };
            map
        }
    };
    object.insert("id".to_owned(), json!(job.id.as_str()));
    object.insert("object".to_owned(), json!("response"));
    object.insert("created_at".to_owned(), json!(job.created_at.0 / 1000));
    object.insert("status".to_owned(), json!(status.as_str()));
    object.insert("background".to_owned(), json!(true));
    object.insert("model".to_owned(), json!(job.model));
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::ids::{IdGenerator, TenantId};
    use crate::jobs::{JobError, JobKind};

    fn job(status: JobStatus, result: Option<&str>, error: Option<JobError>) -> Job {
        Job {
            id: IdGenerator::new().response_id(Timestamp(1_700_000_000_000)),
            tenant: TenantId::parse("t").unwrap(),
            kind: JobKind::Response,
            endpoint: crate::ApiEndpoint::Responses,
            status,
            model: "gpt-4o".into(),
            created_at: Timestamp(1_700_000_000_000),
            scheduled_at: None,
            scheduled_job_id: None,
            metadata: None,
            started_at: None,
            completed_at: None,
            expires_at: None,
            result: result.map(str::to_owned),
            error,
            attempts: 0,
        }
    }

    #[test]
    fn each_job_status_maps_to_its_response_status() {
        let cases = [
            (JobStatus::Pending, "queued"),
            (JobStatus::Running, "in_progress"),
            (JobStatus::Completed, "completed"),
            (JobStatus::Failed, "failed"),
            (JobStatus::Cancelled, "cancelled"),
        ];
        for (status, expected) in cases {
            assert_eq!(response_status(status, None).as_str(), expected);
        }
        let cut_short = json!({"status": "incomplete"});
        assert_eq!(
            response_status(JobStatus::Completed, Some(&cut_short)),
            ResponseStatus::Incomplete
        );
    }

    #[test]
    fn a_completed_response_is_the_providers_under_prisms_id() {
        let done = job(
            JobStatus::Completed,
            Some(r#"{"id":"resp_provider","status":"completed","output":[{"type":"message"}]}"#),
            None,
        );
        let object = response_object(&done);
        assert_eq!(object["id"], json!(done.id.as_str()));
        assert_eq!(object["status"], "completed");
        assert_eq!(object["background"], true);
        assert_eq!(object["output"][0]["type"], "message");
    }

    #[test]
    fn a_failed_response_states_its_reason() {
        let failed = job(
            JobStatus::Failed,
            None,
            Some(JobError::new("upstream broke", "server_error", None)),
        );
        let object = response_object(&failed);
        assert_eq!(object["status"], "failed");
        assert_eq!(object["error"]["message"], "upstream broke");
        assert_eq!(object["error"]["code"], "server_error");
        assert_eq!(object["output"], json!([]));
    }

    #[test]
    fn background_requests_need_store_and_boolean_flags() {
        let ok =
            summarize_response_request(br#"{"model":"m","input":"hi","background":true}"#).unwrap();
        assert!(ok.background && !ok.stream);
        for body in [
            r#"{"model":"m","background":true,"store":false}"#,
            r#"{"model":"m","stream":"yes"}"#,
            r#"{"input":"hi"}"#,
            r#"[1]"#,
        ] {
            assert!(
                summarize_response_request(body.as_bytes()).is_err(),
                "{body}"
            );
        }
    }

    #[test]
    fn the_upstream_request_drops_background_and_keeps_stream_only_when_recorded() {
        let body = br#"{"model":"m","input":"hi","background":true,"stream":true}"#;
        let plain: Value = serde_json::from_slice(&upstream_request(body, false).unwrap()).unwrap();
        assert_eq!(plain, json!({"model":"m","input":"hi"}));
        let streamed: Value =
            serde_json::from_slice(&upstream_request(body, true).unwrap()).unwrap();
        assert_eq!(streamed["stream"], true);
        assert!(streamed.get("background").is_none());
    }
}

//! The part of a chat completion request Prism itself reads: enough to route, to refuse what
//! cannot work, and to forward the rest untouched.

use crate::endpoint::ApiEndpoint;
use crate::error::ServiceError;
use crate::requests::{RequestSummary, summarize_request};

pub type ChatRequestSummary = RequestSummary;

/// Validates a chat completion body: its rules are [`crate::requests`]'.
pub fn summarize_chat_request(body: &[u8]) -> Result<ChatRequestSummary, ServiceError> {
    summarize_request(ApiEndpoint::ChatCompletions, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code_of(body: &str) -> Option<String> {
        match summarize_chat_request(body.as_bytes()) {
            Err(ServiceError::InvalidRequest { code, .. }) => code,
            other => panic!("expected invalid request, got {other:?}"),
        }
    }

    #[test]
    fn summary_reads_model_and_stream_flag() {
        let s = summarize_chat_request(
            br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"x":1}"#,
        )
        .unwrap();
        assert_eq!(
            s,
            ChatRequestSummary {
                model: "gpt-4o".into(),
                stream: true
            }
        );
    }

    #[test]
    fn invalid_utf8_in_a_field_prism_does_not_read_is_refused() {
        let mut body = br#"{"model":"m","messages":[{}],"tools":"o"#.to_vec();
        body.extend_from_slice(b"\xa8\x95\"}");
        match summarize_chat_request(&body) {
            Err(ServiceError::InvalidRequest { code, .. }) => {
                assert_eq!(code.as_deref(), Some("invalid_json"));
            }
            other => panic!("expected invalid_json, got {other:?}"),
        }
    }

    #[test]
    fn each_malformed_body_gets_its_own_code() {
        assert_eq!(code_of("{"), Some("invalid_json".into()));
        assert_eq!(code_of("[1]"), Some("invalid_json".into()));
        assert_eq!(
            code_of(r#"{"messages":[{}]}"#),
            Some("missing_required_parameter".into())
        );
        assert_eq!(
            code_of(r#"{"model":1,"messages":[{}]}"#),
            Some("invalid_type".into())
        );
        assert_eq!(
            code_of(r#"{"model":"m"}"#),
            Some("missing_required_parameter".into())
        );
        assert_eq!(
            code_of(r#"{"model":"m","messages":[]}"#),
            Some("empty_array".into())
        );
        assert_eq!(
            code_of(r#"{"model":"m","messages":[{}],"stream":"yes"}"#),
            Some("invalid_type".into())
        );
    }
}

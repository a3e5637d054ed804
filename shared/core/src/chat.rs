//! The part of a chat completion request Prism itself reads: enough to route, to refuse what
//! cannot work, and to forward the rest untouched.

use serde::Deserialize;

use crate::error::ServiceError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRequestSummary {
    pub model: String,
    pub stream: bool,
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    model: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    messages: Option<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a serde_json::value::RawValue>,
}

/// Validates a chat completion body without building a tree of it: the body is forwarded as the
/// client sent it, so only `model`, `messages` and `stream` are looked at.
pub fn summarize_chat_request(body: &[u8]) -> Result<ChatRequestSummary, ServiceError> {
    // serde would also read a struct from a JSON array; a body must be an object.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    // JSON is UTF-8, and serde_json skips the fields it ignores without checking theirs: without
    // this, invalid UTF-8 in an unread field would be accepted and sent on.
    let parsed = std::str::from_utf8(body).map(serde_json::from_str::<Probe<'_>>);
    let Ok(parsed) = parsed else {
        return Err(ServiceError::invalid(
            "We could not parse the JSON body of your request: it is not valid UTF-8.",
            None,
            Some("invalid_json"),
        ));
    };
    let probe: Probe<'_> = match parsed {
        Ok(p) if is_object => p,
        Ok(_) => {
            return Err(ServiceError::invalid(
                "The request body must be a JSON object.",
                None,
                Some("invalid_json"),
            ));
        }
        Err(e) if e.is_data() => {
            return Err(ServiceError::invalid(
                "The request body must be a JSON object.",
                None,
                Some("invalid_json"),
            ));
        }
        Err(_) => {
            return Err(ServiceError::invalid(
                "We could not parse the JSON body of your request.",
                None,
                Some("invalid_json"),
            ));
        }
    };
    let model = match probe
        .model
        .map(|raw| serde_json::from_str::<String>(raw.get()))
    {
        Some(Ok(m)) if !m.is_empty() => m,
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
    match probe
        .messages
        .map(|raw| serde_json::from_str::<Vec<&serde_json::value::RawValue>>(raw.get()))
    {
        Some(Ok(list)) if !list.is_empty() => {}
        Some(Ok(_)) => {
            return Err(ServiceError::invalid(
                "Invalid 'messages': empty array. Expected an array with minimum length 1.",
                Some("messages"),
                Some("empty_array"),
            ));
        }
        Some(Err(_)) => {
            return Err(ServiceError::invalid(
                "Invalid type for 'messages': expected an array of message objects.",
                Some("messages"),
                Some("invalid_type"),
            ));
        }
        None => {
            return Err(ServiceError::invalid(
                "Missing required parameter: 'messages'.",
                Some("messages"),
                Some("missing_required_parameter"),
            ));
        }
    }
    let stream = match probe.stream.map(|raw| raw.get()) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ServiceError::invalid(
                "Invalid type for 'stream': expected a boolean.",
                Some("stream"),
                Some("invalid_type"),
            ));
        }
    };
    Ok(ChatRequestSummary { model, stream })
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

//! A chat completion body as `POST /v1/chat/completions` reads it: strict JSON (no repeated
//! key, `json_strict`) first, then the summary Prism routes on (`chat::summarize_chat_request`).

use prism_core::ServiceError;
use prism_core::chat::summarize_chat_request;
use prism_core::json_strict::{find_duplicate_key, reject_duplicate_keys};
use serde_json::Value;

/// Longest `param` an error may name: paths of repeated keys are cut short.
const MAX_PARAM_BYTES: usize = 1024;

pub fn chat_request(data: &[u8]) {
    let strict = reject_duplicate_keys(data);
    if let Err(error) = &strict {
        let ServiceError::InvalidRequest { code, param, .. } = error else {
            panic!("a repeated key answered {error:?}");
        };
        match code.as_deref() {
            Some("duplicate_key") => {
                assert!(param.as_ref().is_some_and(|p| p.len() <= MAX_PARAM_BYTES));
            }
            // Nesting past `json_strict::MAX_JSON_DEPTH` is refused before keys are compared.
            Some("invalid_json") => assert!(param.is_none()),
            other => panic!("strict JSON answered the code {other:?}"),
        }
    }
    let parsed = serde_json::from_slice::<Value>(data).ok();
    if let Some(value) = &parsed {
        check_duplicates_are_found(data, value, strict.is_err());
    }
    match summarize_chat_request(data) {
        Ok(summary) => {
            assert!(
                std::str::from_utf8(data).is_ok(),
                "a summary of a body that is not UTF-8"
            );
            // serde_json's Value refuses a lone surrogate escape (`"\ude80"`), which JSON's
            // grammar allows and Prism, reading no string it does not need, lets through.
            let Some(parsed) = &parsed else {
                return;
            };
            // What the router and the upstream see must be what the body says.
            let Value::Object(fields) = parsed else {
                panic!("a summary of a body that is not a JSON object");
            };
            if strict.is_ok() {
                assert_eq!(
                    fields.get("model").and_then(Value::as_str),
                    Some(&*summary.model)
                );
                assert_eq!(
                    fields
                        .get("stream")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    summary.stream
                );
            }
            assert!(!summary.model.is_empty());
        }
        Err(ServiceError::InvalidRequest { .. }) => {}
        Err(other) => panic!("a bad body answered {other:?}"),
    }
}

/// A body with unique keys re-serialised has none; the same body with its first key repeated in
/// front is refused, naming that key.
fn check_duplicates_are_found(data: &[u8], value: &Value, refused: bool) {
    let Ok(canonical) = serde_json::to_vec(value) else {
        return;
    };
    assert_eq!(
        find_duplicate_key(&canonical),
        None,
        "a key repeated in a map"
    );
    let Value::Object(fields) = value else {
        return;
    };
    let Some(first) = fields.keys().next() else {
        return;
    };
    if refused {
        return;
    }
    let Some(open) = data.iter().position(|&b| b == b'{') else {
        return;
    };
    let Ok(key) = serde_json::to_vec(first) else {
        return;
    };
    let doubled = [&data[..=open], &key, b":0,", &data[open + 1..]].concat();
    let found = find_duplicate_key(&doubled).expect("a repeated top-level key goes unnoticed");
    // A long key is reported cut short, marked `...`.
    let reported = found.key.strip_suffix("...").unwrap_or(&found.key);
    assert!(
        found.key == *first || (found.key.ends_with("...") && first.starts_with(reported)),
        "{} reported as {}",
        first,
        found.key
    );
}

//! The output-line wire format of the Batch API: one JSON object per request line, with either
//! the upstream's response (status, request id, body) or an error (code, message).

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::deps::Deps;
use crate::pricing::{Billed, Tier};

#[derive(Serialize)]
struct OutputLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<ResponsePart<'a>>,
    error: Option<LineError<'a>>,
}

#[derive(Serialize)]
struct ResponsePart<'a> {
    status_code: u16,
    request_id: String,
    body: &'a RawValue,
}

#[derive(Serialize)]
struct LineError<'a> {
    code: &'a str,
    message: &'a str,
}

fn request_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill(&mut bytes);
    hex::encode(bytes)
}

pub(crate) fn error_line(deps: &Deps, custom_id: &str, code: &str, message: &str) -> String {
    serde_json::to_string(&OutputLine {
        id: deps.ids.batch_request_id(deps.clock.now()),
        custom_id,
        response: None,
        error: Some(LineError { code, message }),
    })
    .unwrap_or_default()
}

pub(crate) fn response_line(deps: &Deps, custom_id: &str, status: u16, body: &RawValue) -> String {
    serde_json::to_string(&OutputLine {
        id: deps.ids.batch_request_id(deps.clock.now()),
        custom_id,
        response: Some(ResponsePart {
            status_code: status,
            request_id: request_id(),
            body,
        }),
        error: None,
    })
    .unwrap_or_default()
}

/// What a successful output line was billed: the model and usage of its response body at the
/// tier its part line recorded ([`Tier::of_batch_line`]); `None` for error lines and for lines
/// that do not parse. A line recorded without a tier (written before tiers were recorded) bills
/// as a gateway line: standard unless its response says flex.
pub fn billed_line(json: &[u8], recorded: Option<Tier>) -> Option<Billed> {
    #[derive(Deserialize)]
    struct Response<'a> {
        status_code: u16,
        #[serde(borrow)]
        body: &'a RawValue,
    }
    #[derive(Deserialize)]
    struct Line<'a> {
        #[serde(borrow, default)]
        response: Option<Response<'a>>,
    }
    let line: Line<'_> = serde_json::from_slice(json).ok()?;
    let response = line
        .response
        .filter(|r| (200..300).contains(&r.status_code))?;
    let mut billed = Billed::of_completion(response.body.get(), None, Tier::Standard)?;
    if let Some(tier) = recorded {
        billed.tier = tier;
    }
    Some(billed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::Tier;

    #[test]
    fn a_successful_line_is_billed_and_an_error_line_is_not() {
        let ok = br#"{"id":"r","custom_id":"a","response":{"status_code":200,"request_id":"x",
            "body":{"model":"m","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}},"error":null}"#;
        let billed = billed_line(ok, Some(Tier::Batch)).unwrap();
        assert_eq!((billed.model.as_str(), billed.tier), ("m", Tier::Batch));
        let legacy = billed_line(ok, None).unwrap();
        assert_eq!(legacy.tier, Tier::Standard);
        assert_eq!(billed.usage.total_tokens, 7);
        let refused = br#"{"id":"r","custom_id":"a","response":{"status_code":400,"request_id":"x",
            "body":{"error":{"message":"no"}}},"error":null}"#;
        assert_eq!(billed_line(refused, Some(Tier::Standard)), None);
        let failed =
            br#"{"id":"r","custom_id":"a","response":null,"error":{"code":"c","message":"m"}}"#;
        assert_eq!(billed_line(failed, None), None);
    }
}

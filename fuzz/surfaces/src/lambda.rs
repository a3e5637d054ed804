//! What the Lambda runtimes decode from an invocation payload: an SQS event into work
//! deliveries (`async-worker`, the batch functions, `dead-letters`), and an API Gateway or
//! function URL event into the request `api` routes, stage stripped (`strip_stage`).

use aws_lambda_events::event::sqs::SqsEvent;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use lambda_http::RequestExt;
use lambda_http::request::from_str;
use prism_aws::{decode_work_item, encode_work_item};
use prism_core::json_strict::find_duplicate_key;
use prism_lambda::{Record, deliveries_from_event, strip_stage};
use serde_json::Value;

pub fn lambda_events(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<SqsEvent>(data) {
        sqs_event(&event);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && lambda_http_can_convert(text)
        && let Ok(request) = from_str(text)
    {
        http_event(request);
    }
}

/// Whether lambda_http and aws_lambda_events can turn the event into a request without
/// panicking. lambda_http 1.3.2 builds the request URL with `Url::parse(..).unwrap()` from the `Host` and
/// `X-Forwarded-Proto` headers and the event's path (`request.rs`, `build_request_uri`), so an
/// event with, say, `x-forwarded-proto: "http]s"` panics inside the library, before Prism sees
/// a request. Until that is fixed there, such events are left out here (BENCHMARKS.md,
/// "Fuzzing"): those headers must be a plain hostname and `http`/`https`, and paths absolute.
fn lambda_http_can_convert(text: &str) -> bool {
    let Ok(event) = serde_json::from_str::<Value>(text) else {
        return true; // Refused by lambda_http's own parse.
    };
    // A repeated key (AWS never sends one) would make the screen below read another value than
    // lambda_http, which keeps every repeated header.
    if find_duplicate_key(text.as_bytes()).is_some() {
        return false;
    }
    // Dot-separated labels of letters, digits and `-`, the last one letters only: a last label
    // with digits reads as an IPv4 address, which the URL parser may refuse.
    let plain_host = |v: &str| {
        let labels_ok = v.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        let last_ok = v
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_alphabetic()));
        labels_ok && last_ok
    };
    let plain_proto = |v: &str| v.eq_ignore_ascii_case("http") || v.eq_ignore_ascii_case("https");
    let headers_ok = ["headers", "multiValueHeaders"].iter().all(|table| {
        let Some(Value::Object(headers)) = event.get(*table) else {
            return true;
        };
        headers.iter().all(|(name, value)| {
            let check: &dyn Fn(&str) -> bool = if name.eq_ignore_ascii_case("host") {
                &plain_host
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                &plain_proto
            } else {
                return true;
            };
            match value {
                Value::String(v) => check(v),
                Value::Array(vs) => vs.iter().all(|v| v.as_str().is_none_or(check)),
                _ => true,
            }
        })
    });
    let paths = [
        event.get("path"),
        event.get("rawPath"),
        event.pointer("/requestContext/path"),
        event.pointer("/requestContext/http/path"),
    ];
    let paths_ok = paths.iter().flatten().all(|v| match v {
        Value::String(p) => p.is_empty() || p.starts_with('/'),
        _ => true,
    });
    let domain_ok = match event.pointer("/requestContext/domainName") {
        Some(Value::String(domain)) => plain_host(domain),
        _ => true,
    };
    // aws_lambda_events 1.2.1 `expect`s a body flagged base64 to decode (`Body::from_maybe_encoded`);
    // API Gateway only flags bodies it encoded itself.
    let body_ok = match (event.get("isBase64Encoded"), event.get("body")) {
        (Some(Value::Bool(true)), Some(Value::String(body))) => STANDARD.decode(body).is_ok(),
        _ => true,
    };
    // lambda_http 1.3.2 `expect`s the URI built with `rawQueryString` to be valid; clients
    // send it percent-encoded (a raw space cannot be on an HTTP request line).
    let query_ok = match event.get("rawQueryString") {
        Some(Value::String(query)) => query
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b)),
        _ => true,
    };
    // http's `Uri` holds at most 65,534 bytes (API Gateway's own URL limit is far below).
    let short_enough = text.len() < 60_000;
    headers_ok && paths_ok && domain_ok && body_ok && query_ok && short_enough
}

/// One record per message, in order, and every decoded work item encodes back to itself.
fn sqs_event(event: &SqsEvent) {
    let records = deliveries_from_event(event);
    assert_eq!(records.len(), event.records.len());
    for (record, message) in records.iter().zip(&event.records) {
        assert_eq!(
            record.message_id(),
            message.message_id.as_deref().unwrap_or_default()
        );
        if let Record::Work { delivery, .. } = record {
            let encoded = encode_work_item(&delivery.item);
            assert_eq!(decode_work_item(&encoded).as_ref(), Some(&delivery.item));
        }
    }
}

/// Stripping only ever removes a leading `/{stage}` and keeps the query.
fn http_event(request: lambda_http::Request) {
    let before = request.uri().clone();
    let event_path = request.raw_http_path().to_owned();
    let after = strip_stage(request);
    let (old, new) = (before.path(), after.uri().path());
    assert_eq!(before.query(), after.uri().query());
    if old != new {
        assert!(new.starts_with('/'));
        assert!(old.ends_with(new) || new == "/", "{old} became {new}");
        assert!(!event_path.is_empty() || new == "/");
    }
}

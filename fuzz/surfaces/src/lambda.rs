//! What the Lambda runtimes decode from an invocation payload: an SQS event into work
//! deliveries (`async-worker`, the batch functions, `dead-letters`), and an API Gateway or
//! function URL event into the request `api` routes, stage stripped (`strip_stage`).

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_http::RequestExt;
use lambda_http::request::from_str;
use prism_aws::{decode_work_item, encode_work_item};
use prism_lambda::{Record, deliveries_from_event, strip_stage};

pub fn lambda_events(data: &[u8]) {
    if let Ok(event) = serde_json::from_slice::<SqsEvent>(data) {
        sqs_event(&event);
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(request) = from_str(text)
    {
        http_event(request);
    }
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

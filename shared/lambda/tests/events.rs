//! Event parsing and batch responses against the recorded Lambda events in `infra/events/`,
//! and the worker's deadline arithmetic.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers sit outside #[test] functions, where clippy.toml's allowances do not reach"
)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use prism_core::ports::{Receipt, WorkItem};
use prism_lambda::{
    DEADLINE_MARGIN, MAX_INVOCATION, Record, RecordOutcome, batch_response, deliveries_from_event,
    worker_deadline,
};
use serde_json::json;
use tokio::time::Instant;

fn fixture(name: &str) -> SqsEvent {
    let path = format!("{}/../../infra/events/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn work(record: &Record) -> (&str, String, String, &Receipt, u32) {
    match record {
        Record::Work {
            message_id,
            delivery,
        } => {
            let WorkItem::Job(job) = &delivery.item else {
                panic!("expected a job, got {:?}", delivery.item);
            };
            (
                message_id.as_str(),
                job.tenant.to_string(),
                job.id.to_string(),
                &delivery.receipt,
                delivery.receive_count,
            )
        }
        Record::Malformed { message_id } => panic!("{message_id} should have decoded"),
    }
}

fn now_ms() -> u64 {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since.as_millis()).unwrap()
}

#[test]
fn sqs_event_fixture_decodes_two_jobs_and_one_malformed_record() {
    let event = fixture("sqs-jobs.json");

    let records = deliveries_from_event(&event);

    assert_eq!(records.len(), 3);
    let (message_id, tenant, id, receipt, count) = work(&records[0]);
    assert_eq!(message_id, "d13c513a-42f8-4da1-97b1-165f0971b7c4");
    assert_eq!(
        (tenant.as_str(), id.as_str()),
        ("acme", "job_01m8fjznbgbn54wfrbn0pv7xk8")
    );
    assert_eq!(Some(&receipt.0), event.records[0].receipt_handle.as_ref());
    assert_eq!(count, 1);
    let (message_id, tenant, id, receipt, count) = work(&records[1]);
    assert_eq!(message_id, "6aaffc90-0820-4dd4-a5d7-0b9292e06861");
    assert_eq!(
        (tenant.as_str(), id.as_str()),
        ("acme", "job_01m8fjznbgbn54wfrbn0pv7xk9")
    );
    assert_eq!(Some(&receipt.0), event.records[1].receipt_handle.as_ref());
    assert_eq!(count, 2);
    assert_eq!(
        records[2],
        Record::Malformed {
            message_id: "d0350a97-7aea-401f-8967-f6cd1624fdf5".into()
        }
    );
}

#[test]
fn dead_letter_fixture_decodes_one_job_with_its_receive_count() {
    let records = deliveries_from_event(&fixture("sqs-dead-letters.json"));

    assert_eq!(records.len(), 1);
    let (message_id, tenant, id, _, count) = work(&records[0]);
    assert_eq!(message_id, "f334510f-2c51-4cf4-8f6c-a1f1ee741688");
    assert_eq!(
        (tenant.as_str(), id.as_str()),
        ("acme", "job_01m8fjznbgbn54wfrbn0pv7xk8")
    );
    assert_eq!(count, 6);
}

#[test]
fn a_record_without_a_receive_count_counts_as_a_first_delivery() {
    let event: SqsEvent = serde_json::from_value(json!({"Records": [{
        "messageId": "m-1",
        "receiptHandle": "r-1",
        "body": r#"{"v":1,"job":{"tenant":"acme","id":"job_01m8fjznbgbn54wfrbn0pv7xk8"}}"#,
    }]}))
    .unwrap();

    let records = deliveries_from_event(&event);

    assert_eq!(work(&records[0]).4, 1);
}

#[test]
fn a_record_without_a_body_or_with_a_foreign_message_is_malformed() {
    let event: SqsEvent = serde_json::from_value(json!({"Records": [
        {"messageId": "no-body", "receiptHandle": "r-1"},
        {"messageId": "foreign", "receiptHandle": "r-2", "body": r#"{"v":1,"job":{"tenant":"a#b","id":"job_x"}}"#},
    ]}))
    .unwrap();

    let ids: Vec<_> = deliveries_from_event(&event)
        .iter()
        .map(|r| matches!(r, Record::Malformed { .. }).then(|| r.message_id().to_owned()))
        .collect();

    assert_eq!(
        ids,
        [Some("no-body".to_owned()), Some("foreign".to_owned())]
    );
}

#[test]
fn retry_outcomes_become_batch_item_failures_and_done_ones_do_not() {
    let outcomes = [
        ("m-1".to_owned(), RecordOutcome::Done),
        ("m-2".to_owned(), RecordOutcome::Retry),
        ("m-3".to_owned(), RecordOutcome::Done),
        ("m-4".to_owned(), RecordOutcome::Retry),
    ];

    let response = batch_response(&outcomes);

    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": [{"itemIdentifier": "m-2"}, {"itemIdentifier": "m-4"}]})
    );
}

#[test]
fn an_all_done_batch_reports_an_empty_failure_list() {
    let response = batch_response(&[("m-1".to_owned(), RecordOutcome::Done)]);

    assert_eq!(
        serde_json::to_value(&response).unwrap(),
        json!({"batchItemFailures": []})
    );
}

#[test]
fn worker_deadline_leaves_the_margin_before_the_lambda_deadline() {
    let before = Instant::now();

    let deadline = worker_deadline(now_ms() + 90_000);

    let expected = before + Duration::from_secs(90) - DEADLINE_MARGIN;
    let slack = Duration::from_secs(1);
    assert!(deadline + slack >= expected && deadline <= expected + slack);
}

#[test]
fn worker_deadline_is_never_in_the_past() {
    let before = Instant::now();

    assert!(worker_deadline(now_ms() + 10_000) >= before);
    assert!(worker_deadline(now_ms() - 60_000) >= before);
}

#[test]
fn worker_deadline_from_an_emulator_without_a_real_one_is_lambdas_longest_run() {
    let before = Instant::now();

    // cargo-lambda's runtime emulator sends `lambda-runtime-deadline-ms: 600000`.
    let deadline = worker_deadline(600_000);

    let expected = before + MAX_INVOCATION - DEADLINE_MARGIN;
    let slack = Duration::from_secs(1);
    assert!(deadline + slack >= expected && deadline <= expected + slack);
}

#[test]
fn reconcile_report_answers_retriggered_and_purged() {
    let summary = prism_core::reconcile::ReconcileReport {
        retriggered: 2,
        purged: 7,
        purged_files: 1,
        purged_uploads: 4,
        batches: 3,
    };

    assert_eq!(
        serde_json::to_value(summary).unwrap(),
        json!({"retriggered": 2, "purged": 7, "purged_files": 1, "purged_uploads": 4, "batches": 3})
    );
}

//! The Uploads API's rules, case by case.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::ids::{IdGenerator, TenantId};
use crate::uploads::{CompletionClaim, UPLOAD_TTL, UploadPart};

const MB: u64 = 1024 * 1024;

fn create(body: serde_json::Value) -> Result<NewUpload, ServiceError> {
    check_create(serde_json::from_value(body).unwrap(), 200 * MB)
}

fn param_of(error: ServiceError) -> (Option<String>, Option<String>) {
    match error {
        ServiceError::InvalidRequest { param, code, .. } => (param, code),
        ServiceError::StateConflict { param, code, .. } => (param, Some(code)),
        other => panic!("unexpected {other:?}"),
    }
}

fn valid() -> serde_json::Value {
    json!({"bytes": 10, "filename": "in.jsonl", "mime_type": "application/jsonl", "purpose": "batch"})
}

#[test]
fn create_accepts_a_batch_upload_and_names_the_parameter_of_each_refusal() {
    let new = create(valid()).unwrap();
    assert_eq!((new.bytes, new.purpose), (10, FilePurpose::Batch));
    let cases = [
        ("purpose", json!("fine-tune"), "purpose"),
        ("purpose", json!(null), "purpose"),
        ("bytes", json!(200 * MB + 1), "bytes"),
        ("bytes", json!(0), "bytes"),
        ("bytes", json!("ten"), "bytes"),
        ("filename", json!(""), "filename"),
        ("mime_type", json!(7), "mime_type"),
        (
            "expires_after",
            json!({"anchor": "created_at", "seconds": 10}),
            "expires_after.seconds",
        ),
        (
            "expires_after",
            json!({"anchor": "now", "seconds": 3600}),
            "expires_after.anchor",
        ),
    ];
    for (field, value, param) in cases {
        let mut body = valid();
        body[field] = value.clone();
        let error = create(body).expect_err(&format!("{field} = {value} must be refused"));
        assert_eq!(
            param_of(error).0.as_deref(),
            Some(param),
            "{field} = {value}"
        );
    }
    let over = create(
        json!({"bytes": 200 * MB + 1, "filename": "a", "mime_type": "b", "purpose": "batch"}),
    );
    assert_eq!(
        param_of(over.unwrap_err()).1.as_deref(),
        Some("file_too_large")
    );
}

fn upload(bytes: u64) -> Upload {
    let ids = IdGenerator::new();
    let now = Timestamp(1_000_000);
    Upload {
        id: ids.upload_id(now),
        tenant: TenantId::parse("acme").unwrap(),
        filename: "in.jsonl".into(),
        purpose: FilePurpose::Batch,
        bytes,
        mime_type: "application/jsonl".into(),
        created_at: now,
        expires_at: now.plus(UPLOAD_TTL),
        file_expires_after: None,
        status: UploadStatus::Pending,
        completion: None,
    }
}

fn part(upload: &Upload, bytes: u64) -> UploadPart {
    UploadPart {
        id: IdGenerator::new().part_id(upload.created_at),
        upload_id: upload.id.clone(),
        tenant: upload.tenant.clone(),
        bytes,
        created_at: upload.created_at,
    }
}

fn request(parts: &[&UploadPart], md5: Option<&str>) -> CompleteRequest {
    CompleteRequest {
        part_ids: parts.iter().map(|p| p.id.clone()).collect(),
        md5: md5.map(str::to_owned),
    }
}

#[test]
fn complete_request_refuses_a_missing_empty_or_repeated_part_list_and_a_bad_md5() {
    let parse = |v: serde_json::Value| check_complete_request(serde_json::from_value(v).unwrap());
    let id = IdGenerator::new().part_id(Timestamp(1)).to_string();
    assert!(parse(json!({"part_ids": [id]})).is_ok());
    for (body, param) in [
        (json!({}), "part_ids"),
        (json!({"part_ids": []}), "part_ids"),
        (json!({"part_ids": "x"}), "part_ids"),
        (json!({"part_ids": [id, id]}), "part_ids"),
        (json!({"part_ids": ["file-x"]}), "part_ids"),
        (json!({"part_ids": [id], "md5": "xyz"}), "md5"),
    ] {
        let error = parse(body.clone()).expect_err(&format!("{body} must be refused"));
        assert_eq!(param_of(error).0.as_deref(), Some(param), "{body}");
    }
}

#[test]
fn complete_joins_the_named_parts_in_the_clients_order_when_their_sizes_add_up() {
    let up = upload(10);
    let (a, b) = (part(&up, 4), part(&up, 6));
    let step = completion(
        &up,
        &[a.clone(), b.clone()],
        &request(&[&b, &a], None),
        up.created_at,
    )
    .unwrap();
    assert_eq!(
        step,
        CompletionStep::Begin {
            parts: vec![b, a],
            file_id: None
        }
    );
}

#[test]
fn complete_refuses_a_size_mismatch_and_parts_of_another_upload() {
    let up = upload(10);
    let a = part(&up, 4);
    let short = completion(
        &up,
        std::slice::from_ref(&a),
        &request(&[&a], None),
        up.created_at,
    );
    assert_eq!(param_of(short.unwrap_err()).0.as_deref(), Some("bytes"));
    let other = upload(10);
    let foreign = part(&other, 10);
    let error = completion(&up, &[a], &request(&[&foreign], None), up.created_at).unwrap_err();
    assert_eq!(
        param_of(error),
        (Some("part_ids".into()), Some("unknown_part".into()))
    );
}

#[test]
fn completing_again_replays_the_same_request_and_refuses_another() {
    let mut up = upload(10);
    let (a, b) = (part(&up, 10), part(&up, 10));
    let file_id = IdGenerator::new().file_id(up.created_at);
    up.status = UploadStatus::Completed;
    up.completion = Some(CompletionClaim {
        file_id: file_id.clone(),
        part_ids: vec![a.id.clone()],
        md5: None,
    });
    let known = [a.clone(), b.clone()];
    assert_eq!(
        completion(&up, &known, &request(&[&a], None), up.created_at).unwrap(),
        CompletionStep::Replay(file_id)
    );
    let again = completion(&up, &known, &request(&[&b], None), up.created_at).unwrap_err();
    let ServiceError::StateConflict { code, .. } = again else {
        panic!("expected a 409");
    };
    assert_eq!(code, "upload_already_completed");
}

#[test]
fn a_complete_repeated_after_a_crash_reuses_its_file_and_another_gets_a_new_one() {
    let mut up = upload(10);
    let (a, b) = (part(&up, 10), part(&up, 10));
    let file_id = IdGenerator::new().file_id(up.created_at);
    up.completion = Some(CompletionClaim {
        file_id: file_id.clone(),
        part_ids: vec![a.id.clone()],
        md5: None,
    });
    let known = [a.clone(), b.clone()];
    let same = completion(&up, &known, &request(&[&a], None), up.created_at).unwrap();
    assert!(matches!(same, CompletionStep::Begin { file_id: Some(f), .. } if f == file_id));
    let other = completion(&up, &known, &request(&[&b], None), up.created_at).unwrap();
    assert!(matches!(other, CompletionStep::Begin { file_id: None, .. }));
}

#[test]
fn cancelled_and_expired_uploads_refuse_parts_and_complete_with_409() {
    let mut up = upload(10);
    let a = part(&up, 10);
    let late = up.expires_at.plus(Duration::from_secs(1));
    for (at, status, code) in [
        (late, UploadStatus::Pending, "upload_expired"),
        (up.created_at, UploadStatus::Cancelled, "upload_cancelled"),
    ] {
        up.status = status;
        let ServiceError::StateConflict { code: got, .. } = part_refusal(&up, at).unwrap_err()
        else {
            panic!("expected a 409");
        };
        assert_eq!(got, code);
        let refused =
            completion(&up, std::slice::from_ref(&a), &request(&[&a], None), at).unwrap_err();
        assert!(matches!(refused, ServiceError::StateConflict { .. }));
    }
}

#[test]
fn cancel_is_once_then_answered_as_is_and_refused_when_completed_or_expired() {
    let mut up = upload(10);
    assert_eq!(
        cancellation(&up, up.created_at).unwrap(),
        CancelStep::Cancel
    );
    assert!(cancellation(&up, up.expires_at).is_err());
    up.status = UploadStatus::Cancelled;
    assert_eq!(
        cancellation(&up, up.created_at).unwrap(),
        CancelStep::AlreadyCancelled
    );
    up.status = UploadStatus::Completed;
    assert!(cancellation(&up, up.created_at).is_err());
}

#[test]
fn a_part_is_capped_by_openai_the_backend_and_the_upload() {
    let up = upload(200 * MB);
    assert_eq!(part_byte_limit(&up, u64::MAX), MAX_PART_BYTES);
    assert_eq!(part_byte_limit(&up, 6 * MB), 6 * MB);
    assert_eq!(part_byte_limit(&upload(10), 6 * MB), 10);
}

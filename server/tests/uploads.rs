//! The Uploads API through `prism serve` (and the Lambda binaries): a file sent in parts, in
//! parallel and out of order, completed in the client's order into one ordinary file that
//! downloads and feeds a batch; every error case with its `param`; tenancy; expiry; a complete
//! cut by a crash. Runs on every backend.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::time::Duration;

use md5::{Digest, Md5};
use serde_json::{Value, json};
use support::{Env, Setup, chat_batch_input, eventually, start};

async fn create_upload(env: &Env, key: &str, bytes: usize) -> Value {
    let response = env
        .post(
            key,
            "/v1/uploads",
            &json!({"bytes": bytes, "filename": "input.jsonl", "mime_type": "application/jsonl", "purpose": "batch"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn send_part(env: &Env, key: &str, upload: &str, data: &[u8]) -> reqwest::Response {
    let form = reqwest::multipart::Form::new().part(
        "data",
        reqwest::multipart::Part::bytes(data.to_vec()).file_name("blob"),
    );
    env.http
        .post(env.url(&format!("/v1/uploads/{upload}/parts")))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

async fn part_id(env: &Env, key: &str, upload: &str, data: &[u8]) -> String {
    let response = send_part(env, key, upload, data).await;
    assert_eq!(response.status(), 200);
    let part: Value = response.json().await.unwrap();
    assert_eq!(part["object"], "upload.part");
    assert_eq!(part["upload_id"], upload);
    part["id"].as_str().unwrap().to_owned()
}

async fn complete(env: &Env, key: &str, upload: &str, body: Value) -> reqwest::Response {
    env.post(key, &format!("/v1/uploads/{upload}/complete"), &body)
        .await
}

/// Asserts an OpenAI error answer: status, `param` and `code`.
async fn assert_error(response: reqwest::Response, status: u16, param: Option<&str>, code: &str) {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["param"].as_str(), param, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
}

fn md5_hex(bytes: &[u8]) -> String {
    hex::encode(Md5::digest(bytes))
}

#[tokio::test]
async fn parts_sent_out_of_order_complete_into_one_file_that_a_batch_reads_whole() {
    let env = start(Setup::default()).await;
    let input = chat_batch_input("up", "gpt-mock", 300);
    let bytes = input.as_bytes();
    let upload = create_upload(&env, &env.alpha, bytes.len()).await;
    let id = upload["id"].as_str().unwrap();
    assert!(id.starts_with("upload_"));
    assert_eq!(upload["object"], "upload");
    assert_eq!(upload["status"], "pending");
    assert!(upload["file"].is_null());
    assert_eq!(
        upload["expires_at"].as_i64().unwrap(),
        upload["created_at"].as_i64().unwrap() + 3600
    );
    // Three parts, cut mid-line and mid-character-free, sent at once; ids in the file's order.
    let cuts = [0, bytes.len() / 3, bytes.len() * 2 / 3, bytes.len()];
    let sends = (0..3).map(|i| part_id(&env, &env.alpha, id, &bytes[cuts[i]..cuts[i + 1]]));
    let ids: Vec<String> = futures::future::join_all(sends.rev()).await;
    let ordered: Vec<String> = ids.into_iter().rev().collect();
    let body = json!({"part_ids": ordered, "md5": md5_hex(bytes)});
    let response = complete(&env, &env.alpha, id, body.clone()).await;
    assert_eq!(response.status(), 200);
    let done: Value = response.json().await.unwrap();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["file"]["object"], "file");
    assert_eq!(done["file"]["bytes"], bytes.len());
    assert_eq!(done["file"]["purpose"], "batch");
    assert_eq!(done["file"]["filename"], "input.jsonl");
    let file = done["file"]["id"].as_str().unwrap();
    let content = env
        .get(&env.alpha, &format!("/v1/files/{file}/content"))
        .await;
    assert_eq!(content.bytes().await.unwrap().as_ref(), bytes);
    // The same complete again (a retry whose answer was lost) answers the same file.
    let again: Value = complete(&env, &env.alpha, id, body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["file"]["id"], file);
    let batch: Value = env
        .post(
            &env.alpha,
            "/v1/batches",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let id = batch["id"].as_str().unwrap();
    let finished = env
        .wait_for_batch(id, &["completed"], Duration::from_secs(120))
        .await;
    let (output, errors) = env.finished_batch_lines(&finished, 300).await;
    assert_eq!((output.len(), errors.len()), (300, 0));
}

#[tokio::test]
async fn create_refuses_a_purpose_other_than_batch_and_a_size_over_the_cap() {
    let env = start(Setup::default()).await;
    let base = json!({"bytes": 10, "filename": "a.jsonl", "mime_type": "application/jsonl", "purpose": "batch"});
    for (field, value, param, code) in [
        ("purpose", json!("fine-tune"), "purpose", "invalid_value"),
        (
            "bytes",
            json!(200 * 1024 * 1024 + 1),
            "bytes",
            "file_too_large",
        ),
        ("bytes", json!(0), "bytes", "invalid_value"),
        (
            "filename",
            json!(null),
            "filename",
            "missing_required_parameter",
        ),
        ("mime_type", json!(""), "mime_type", "invalid_value"),
    ] {
        let mut body = base.clone();
        body[field] = value;
        assert_error(
            env.post(&env.alpha, "/v1/uploads", &body).await,
            400,
            Some(param),
            code,
        )
        .await;
    }
}

#[tokio::test]
async fn complete_refuses_a_size_mismatch_an_md5_mismatch_and_foreign_or_unknown_parts() {
    let env = start(Setup::default()).await;
    let data = b"{\"a\":1}\n";
    let upload = create_upload(&env, &env.alpha, data.len() * 2).await;
    let id = upload["id"].as_str().unwrap();
    let first = part_id(&env, &env.alpha, id, data).await;
    assert_error(
        complete(&env, &env.alpha, id, json!({"part_ids": [first]})).await,
        400,
        Some("bytes"),
        "upload_size_mismatch",
    )
    .await;
    let other = create_upload(&env, &env.alpha, data.len()).await;
    let foreign = part_id(&env, &env.alpha, other["id"].as_str().unwrap(), data).await;
    assert_error(
        complete(&env, &env.alpha, id, json!({"part_ids": [first, foreign]})).await,
        400,
        Some("part_ids"),
        "unknown_part",
    )
    .await;
    assert_error(
        complete(
            &env,
            &env.alpha,
            id,
            json!({"part_ids": [first, "part_00000000000000000000000000"]}),
        )
        .await,
        400,
        Some("part_ids"),
        "unknown_part",
    )
    .await;
    let second = part_id(&env, &env.alpha, id, data).await;
    let wrong = "0".repeat(32);
    assert_error(
        complete(
            &env,
            &env.alpha,
            id,
            json!({"part_ids": [first, second], "md5": wrong}),
        )
        .await,
        400,
        Some("md5"),
        "md5_mismatch",
    )
    .await;
    let files: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(
        files["data"],
        json!([]),
        "a refused complete leaves no file"
    );
    // Still pending: the right complete succeeds, then another one is refused.
    let done = complete(&env, &env.alpha, id, json!({"part_ids": [first, second]})).await;
    assert_eq!(done.status(), 200);
    assert_error(
        complete(&env, &env.alpha, id, json!({"part_ids": [second, first]})).await,
        409,
        Some("part_ids"),
        "upload_already_completed",
    )
    .await;
    assert_error(
        send_part(&env, &env.alpha, id, data).await,
        409,
        None,
        "upload_completed",
    )
    .await;
}

#[tokio::test]
async fn joined_parts_that_are_not_utf8_are_refused_like_a_files_upload() {
    let env = start(Setup::default()).await;
    let upload = create_upload(&env, &env.alpha, 4).await;
    let id = upload["id"].as_str().unwrap();
    // "é" cut in two is fine across parts; a lone continuation byte is not.
    let a = part_id(&env, &env.alpha, id, &[b'a', 0xc3]).await;
    let b = part_id(&env, &env.alpha, id, &[0xa9, b'\n']).await;
    assert_eq!(
        complete(&env, &env.alpha, id, json!({"part_ids": [a, b]}))
            .await
            .status(),
        200
    );
    let broken = create_upload(&env, &env.alpha, 2).await;
    let id = broken["id"].as_str().unwrap();
    let c = part_id(&env, &env.alpha, id, &[0xa9, b'\n']).await;
    assert_error(
        complete(&env, &env.alpha, id, json!({"part_ids": [c]})).await,
        400,
        Some("part_ids"),
        "invalid_file_format",
    )
    .await;
}

#[tokio::test]
async fn a_cancelled_upload_takes_no_parts_and_no_complete() {
    let env = start(Setup::default()).await;
    let data = b"{}\n";
    let upload = create_upload(&env, &env.alpha, data.len()).await;
    let id = upload["id"].as_str().unwrap();
    let part = part_id(&env, &env.alpha, id, data).await;
    let cancelled = env
        .post(&env.alpha, &format!("/v1/uploads/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancelled.status(), 200);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["status"], "cancelled");
    assert_error(
        send_part(&env, &env.alpha, id, data).await,
        409,
        None,
        "upload_cancelled",
    )
    .await;
    assert_error(
        complete(&env, &env.alpha, id, json!({"part_ids": [part]})).await,
        409,
        None,
        "upload_cancelled",
    )
    .await;
    let again: Value = env
        .post(&env.alpha, &format!("/v1/uploads/{id}/cancel"), &json!({}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(again["status"], "cancelled");
}

#[tokio::test]
async fn an_expired_upload_answers_409_to_parts_complete_and_cancel() {
    let env = start(Setup {
        files: "upload_ttl = \"2s\"",
        ..Setup::default()
    })
    .await;
    let data = b"{}\n";
    let upload = create_upload(&env, &env.alpha, data.len()).await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let part = part_id(&env, &env.alpha, &id, data).await;
    eventually(Duration::from_secs(20), "the upload expires", || async {
        send_part(&env, &env.alpha, &id, data).await.status() == 409
    })
    .await;
    assert_error(
        send_part(&env, &env.alpha, &id, data).await,
        409,
        None,
        "upload_expired",
    )
    .await;
    assert_error(
        complete(&env, &env.alpha, &id, json!({"part_ids": [part]})).await,
        409,
        None,
        "upload_expired",
    )
    .await;
    assert_error(
        env.post(&env.alpha, &format!("/v1/uploads/{id}/cancel"), &json!({}))
            .await,
        409,
        None,
        "upload_expired",
    )
    .await;
}

#[tokio::test]
async fn another_tenants_upload_is_a_404_everywhere() {
    let env = start(Setup::default()).await;
    let data = b"{}\n";
    let upload = create_upload(&env, &env.alpha, data.len()).await;
    let id = upload["id"].as_str().unwrap();
    let part = part_id(&env, &env.alpha, id, data).await;
    assert_eq!(send_part(&env, &env.beta, id, data).await.status(), 404);
    assert_eq!(
        complete(&env, &env.beta, id, json!({"part_ids": [part]}))
            .await
            .status(),
        404
    );
    let cancel = env
        .post(&env.beta, &format!("/v1/uploads/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(cancel.status(), 404);
    assert_eq!(
        send_part(&env, &env.alpha, "upload_nope", data)
            .await
            .status(),
        404
    );
    // Untouched by the other tenant's tries.
    assert_eq!(
        complete(&env, &env.alpha, id, json!({"part_ids": [part]}))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn a_files_upload_over_the_request_cap_points_to_the_uploads_api() {
    let env = start(Setup {
        http: "max_body_bytes = 4096",
        files: "max_upload_bytes = 2048",
        ..Setup::default()
    })
    .await;
    let big = vec![b'x'; 3000];
    let response = env
        .upload(
            &env.alpha,
            &[("purpose", "", b"batch"), ("file", "big.jsonl", &big)],
        )
        .await;
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    if env.backend.is_aws() {
        // Over Lambda's payload cap but within the file cap: the Uploads API takes it.
        let env = start(Setup {
            http: "max_body_bytes = 2048",
            ..Setup::default()
        })
        .await;
        let response = env
            .upload(
                &env.alpha,
                &[("purpose", "", b"batch"), ("file", "big.jsonl", &big)],
            )
            .await;
        assert_eq!(response.status(), 413);
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("Uploads API"), "{message}");
        assert!(
            message.contains("client.uploads.upload_file_chunked"),
            "{message}"
        );
        assert!(message.contains("part_size="), "{message}");
    } else {
        assert!(message.contains("2048"), "{message}");
    }
}

#[tokio::test]
async fn a_complete_cut_by_a_crash_leaves_no_file_or_one_whole_file_and_its_repeat_answers_it() {
    let mut env = start(Setup::default()).await;
    let line =
        "{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n";
    let input = line.repeat(8 * 1024 * 1024 / line.len());
    let bytes = input.as_bytes();
    let upload = create_upload(&env, &env.alpha, bytes.len()).await;
    let id = upload["id"].as_str().unwrap().to_owned();
    let mut parts = Vec::new();
    for chunk in bytes.chunks(1024 * 1024) {
        parts.push(part_id(&env, &env.alpha, &id, chunk).await);
    }
    let body = json!({"part_ids": parts});
    let url = env.url(&format!("/v1/uploads/{id}/complete"));
    let request = env
        .http
        .post(url)
        .bearer_auth(&env.alpha)
        .json(&body)
        .send();
    let in_flight = tokio::spawn(request);
    tokio::time::sleep(Duration::from_millis(30)).await;
    env.kill_server().await;
    let _ = in_flight.await;
    env.start_server().await;
    let files: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    let before = files["data"].as_array().unwrap().len();
    assert!(before <= 1, "at most one file: {files}");
    let done: Value = complete(&env, &env.alpha, &id, body.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(done["status"], "completed", "{done}");
    let file = done["file"]["id"].as_str().unwrap();
    if before == 1 {
        assert_eq!(
            files["data"][0]["id"], file,
            "the repeat answers the file the crash left"
        );
    }
    let files: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(files["data"].as_array().unwrap().len(), 1, "{files}");
    let content = env
        .get(&env.alpha, &format!("/v1/files/{file}/content"))
        .await
        .bytes()
        .await
        .unwrap();
    assert_eq!(content.len(), bytes.len());
    assert!(content.as_ref() == bytes);
}

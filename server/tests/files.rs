//! The Files API through `prism serve`: multipart uploads streamed to the blob store, the file
//! object, listing, content, delete, tenancy and the upload checks. Runs on both backends.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use serde_json::Value;
use support::{Parts, Setup, start};

const INPUT: &[u8] = b"{\"custom_id\":\"a\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{\"model\":\"m\",\"messages\":[]}}\n";

#[tokio::test]
async fn uploaded_file_is_described_listed_read_back_and_deleted() {
    let env = start(Setup::default()).await;
    // The file part first, the purpose after it: the order multipart clients choose is theirs.
    let response = env
        .upload(
            &env.alpha,
            &[("file", "requests.jsonl", INPUT), ("purpose", "", b"batch")],
        )
        .await;
    assert_eq!(response.status(), 200);
    let file: Value = response.json().await.unwrap();
    let id = file["id"].as_str().unwrap();
    assert!(id.starts_with("file-"));
    assert_eq!(file["object"], "file");
    assert_eq!(file["bytes"], INPUT.len());
    assert_eq!(file["filename"], "requests.jsonl");
    assert_eq!(file["purpose"], "batch");
    assert_eq!(file["status"], "processed");
    assert!(file["status_details"].is_null());
    let created = file["created_at"].as_i64().unwrap();
    assert_eq!(
        file["expires_at"].as_i64().unwrap(),
        created + 30 * 24 * 3600
    );

    let got: Value = env
        .get(&env.alpha, &format!("/v1/files/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(got, file);
    let list: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(list["object"], "list");
    assert_eq!(list["data"][0], file);
    assert_eq!(list["first_id"], id);
    assert_eq!(list["last_id"], id);
    assert_eq!(list["has_more"], false);

    let content = env
        .get(&env.alpha, &format!("/v1/files/{id}/content"))
        .await;
    assert_eq!(content.status(), 200);
    assert_eq!(content.bytes().await.unwrap().as_ref(), INPUT);

    let deleted = env.delete(&env.alpha, &format!("/v1/files/{id}")).await;
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(
        deleted,
        serde_json::json!({"id": id, "object": "file", "deleted": true})
    );
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        assert_eq!(env.get(&env.alpha, &path).await.status(), 404);
    }
    assert_eq!(
        env.delete(&env.alpha, &format!("/v1/files/{id}"))
            .await
            .status(),
        404
    );
}

#[tokio::test]
async fn another_tenants_file_is_a_404_everywhere() {
    let env = start(Setup::default()).await;
    let id = env.upload_batch_file(&env.alpha, INPUT).await;
    for response in [
        env.get(&env.beta, &format!("/v1/files/{id}")).await,
        env.get(&env.beta, &format!("/v1/files/{id}/content")).await,
        env.delete(&env.beta, &format!("/v1/files/{id}")).await,
    ] {
        assert_eq!(response.status(), 404);
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let theirs: Value = env.get(&env.beta, "/v1/files").await.json().await.unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        env.get(&env.alpha, &format!("/v1/files/{id}"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn list_pages_with_limit_after_order_and_purpose() {
    let env = start(Setup::default()).await;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(env.upload_batch_file(&env.alpha, INPUT).await);
    }
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first: Value = env
        .get(&env.alpha, "/v1/files?limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&first), vec![made[4].clone(), made[3].clone()]);
    assert_eq!(first["has_more"], true);
    let next: Value = env
        .get(&env.alpha, &format!("/v1/files?limit=2&after={}", made[3]))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&next), vec![made[2].clone(), made[1].clone()]);
    let ascending: Value = env
        .get(
            &env.alpha,
            &format!("/v1/files?order=asc&after={}&purpose=batch", made[1]),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        ids(&ascending),
        vec![made[2].clone(), made[3].clone(), made[4].clone()]
    );
    assert_eq!(ascending["has_more"], false);
    let outputs: Value = env
        .get(&env.alpha, "/v1/files?purpose=batch_output")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(&outputs).len(), 0);
    for bad in [
        "/v1/files?limit=0",
        "/v1/files?order=sideways",
        "/v1/files?purpose=vision",
    ] {
        assert_eq!(env.get(&env.alpha, bad).await.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn bad_uploads_are_400s_naming_the_part_and_store_nothing() {
    let env = start(Setup::default()).await;
    let cases: [(Parts<'_>, &str); 6] = [
        (
            &[("purpose", "", b"fine-tune"), ("file", "x.jsonl", INPUT)],
            "purpose",
        ),
        (
            &[("file", "x.jsonl", INPUT), ("purpose", "", b"assistants")],
            "purpose",
        ),
        (&[("file", "x.jsonl", INPUT)], "purpose"),
        (&[("purpose", "", b"batch")], "file"),
        (
            &[("purpose", "", b"batch"), ("file", "x.jsonl", b"")],
            "file",
        ),
        (
            &[
                ("purpose", "", b"batch"),
                ("file", "x.jsonl", b"{\"a\":\"\xff\xfe\"}\n"),
            ],
            "file",
        ),
    ];
    for (parts, param) in cases {
        let response = env.upload(&env.alpha, parts).await;
        assert_eq!(response.status(), 400, "{param}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["param"], param, "{error}");
        assert_eq!(error["error"]["type"], "invalid_request_error");
    }
    let response = env
        .http
        .post(env.url("/v1/files"))
        .bearer_auth(&env.alpha)
        .json(&serde_json::json!({"purpose": "batch"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "not multipart");
    let list: Value = env.get(&env.alpha, "/v1/files").await.json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    // Nothing refused left bytes behind either (embedded: the blob directory is empty).
    if !env.backend.is_aws() {
        let blobs = env.data_dir().join("files").join("alpha");
        let left = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "bytes left in {}", blobs.display());
    }
}

#[tokio::test]
async fn uploads_past_the_cap_are_413_saying_why() {
    let env = start(Setup::default()).await;
    // 7 MB: within the embedded cap (200 MB), past the AWS backend's (Lambda's 6 MB payload).
    let line =
        b"{\"custom_id\":\"x\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n";
    let big: Vec<u8> = line.iter().copied().cycle().take(7 * 1024 * 1024).collect();
    let response = env
        .upload(
            &env.alpha,
            &[("purpose", "", b"batch"), ("file", "big.jsonl", &big)],
        )
        .await;
    if env.backend.is_aws() {
        assert_eq!(response.status(), 413);
        let error: Value = response.json().await.unwrap();
        let message = error["error"]["message"].as_str().unwrap();
        assert!(message.contains("Lambda"), "{message}");
        assert!(message.contains("payload limit"), "{message}");
    } else {
        assert_eq!(response.status(), 200);
        let file: Value = response.json().await.unwrap();
        assert_eq!(file["bytes"], big.len());
        let id = file["id"].as_str().unwrap();
        let content = env
            .get(&env.alpha, &format!("/v1/files/{id}/content"))
            .await;
        assert!(content.bytes().await.unwrap() == big);
    }

    let small_cap = start(Setup {
        files: "max_upload_bytes = 1000",
        ..Setup::default()
    })
    .await;
    let response = small_cap
        .upload(
            &small_cap.alpha,
            &[("purpose", "", b"batch"), ("file", "x.jsonl", &big[..2000])],
        )
        .await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1000 bytes")
    );
}

#[tokio::test]
async fn large_downloads_redirect_to_the_blob_store_where_it_serves_them() {
    let env = start(Setup {
        files: "redirect_downloads_above = 100",
        ..Setup::default()
    })
    .await;
    let id = env.upload_batch_file(&env.alpha, &INPUT.repeat(4)).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = no_follow
        .get(env.url(&format!("/v1/files/{id}/content")))
        .bearer_auth(&env.alpha)
        .send()
        .await
        .unwrap();
    if env.backend.is_aws() {
        assert_eq!(response.status(), 307);
        assert!(
            response.headers()["location"]
                .to_str()
                .unwrap()
                .contains("X-Amz-Signature")
        );
    } else {
        assert_eq!(
            response.status(),
            200,
            "local files are served by prism itself"
        );
    }
    // A client that follows redirects (as the SDKs do) gets the bytes either way.
    let content = env
        .get(&env.alpha, &format!("/v1/files/{id}/content"))
        .await;
    assert_eq!(content.status(), 200);
    assert_eq!(
        content.bytes().await.unwrap().as_ref(),
        INPUT.repeat(4).as_slice()
    );
    let small = env.upload_batch_file(&env.alpha, INPUT).await;
    let response = no_follow
        .get(env.url(&format!("/v1/files/{small}/content")))
        .bearer_auth(&env.alpha)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "small files are streamed directly");
}

#[tokio::test]
async fn expires_after_sets_the_expiry_from_creation() {
    let env = start(Setup::default()).await;
    let response = env
        .upload(
            &env.alpha,
            &[
                ("purpose", "", b"batch"),
                ("expires_after[anchor]", "", b"created_at"),
                ("expires_after[seconds]", "", b"7200"),
                ("file", "x.jsonl", INPUT),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let file: Value = response.json().await.unwrap();
    assert_eq!(
        file["expires_at"].as_i64().unwrap(),
        file["created_at"].as_i64().unwrap() + 7200
    );
    let response = env
        .upload(
            &env.alpha,
            &[
                ("purpose", "", b"batch"),
                ("expires_after[seconds]", "", b"60"),
                ("file", "x.jsonl", INPUT),
            ],
        )
        .await;
    assert_eq!(response.status(), 400);
}

//! Files: uploads checked as they stream in, reads, deletes that wait for a batch, and expiry.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::support::*;

async fn upload(world: &World, pieces: Vec<&'static [u8]>) -> Result<FileRecord, ServiceError> {
    let body = futures::stream::iter(pieces.into_iter().map(|p| Ok(Bytes::from_static(p))));
    let pending = store_upload(&world.deps, &tenant(), body.boxed()).await?;
    register_upload(
        &world.deps,
        pending,
        "in.jsonl".into(),
        FilePurpose::Batch,
        None,
    )
    .await
}

fn code(error: &ServiceError) -> Option<&str> {
    match error {
        ServiceError::InvalidRequest { code, .. } => code.as_deref(),
        _ => None,
    }
}

#[tokio::test(start_paused = true)]
async fn an_upload_is_stored_registered_and_read_back_as_sent() {
    let world = World::new();
    let file = upload(&world, vec![b"{\"a\":", "1}\n\u{e9}".as_bytes()])
        .await
        .unwrap();
    assert_eq!(file.bytes, 10);

    let got = get_file(&world.deps, &tenant(), file.id.as_str())
        .await
        .unwrap();
    assert_eq!(got, file);
    let FileContent::Stream { body, .. } = file_content(&world.deps, &tenant(), file.id.as_str())
        .await
        .unwrap()
    else {
        panic!("the memory blob store has no presigned URLs");
    };
    let read: Vec<Bytes> = body.map(|piece| piece.unwrap()).collect().await;
    assert_eq!(read.concat(), "{\"a\":1}\n\u{e9}".as_bytes());
}

#[tokio::test(start_paused = true)]
async fn an_upload_split_inside_a_character_is_accepted_and_broken_utf8_is_refused() {
    let world = World::new();
    let e_acute = "\u{e9}".as_bytes();
    let (first, second): (&'static [u8], &'static [u8]) = (&e_acute[..1], &e_acute[1..]);
    assert!(upload(&world, vec![b"x", first, second]).await.is_ok());

    let refused = upload(&world, vec![b"ok", &[0xff, 0xfe]])
        .await
        .unwrap_err();
    assert_eq!(code(&refused), Some("invalid_file_format"));
    assert_eq!(
        world.blobs.keys("files/").len(),
        1,
        "the refused bytes were not kept"
    );
}

#[tokio::test(start_paused = true)]
async fn an_upload_over_the_limit_or_empty_is_refused_and_leaves_no_bytes() {
    let mut world = World::new();
    world.deps.file_policy.max_upload_bytes = 8;
    let too_big = upload(&world, vec![b"12345", b"67890"]).await.unwrap_err();
    assert!(matches!(too_big, ServiceError::TooLarge { .. }));
    let empty = upload(&world, vec![]).await.unwrap_err();
    assert_eq!(code(&empty), Some("empty_file"));
    assert!(world.blobs.keys("files/").is_empty());
}

#[tokio::test(start_paused = true)]
async fn deleting_a_file_a_running_batch_reads_keeps_its_bytes_until_the_batch_ends() {
    let world = World::new();
    let input = world.upload_batch_input(&[batch_line("only", "hi")]).await;
    let body = serde_json::json!({"input_file_id": input.id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"});
    let batch = create_batch(&world.deps, &tenant(), body.to_string().as_bytes())
        .await
        .unwrap();

    delete_file(&world.deps, &tenant(), input.id.as_str())
        .await
        .unwrap();
    assert!(matches!(
        get_file(&world.deps, &tenant(), input.id.as_str()).await,
        Err(ServiceError::NotFound { .. })
    ));
    assert!(
        world.blobs.bytes(&input.blob_key()).is_some(),
        "the batch still reads it"
    );
    world.drain().await;

    assert_eq!(
        world.batch(&batch.batch_ref()).await.status,
        BatchStatus::Completed
    );
    assert!(
        world.blobs.bytes(&input.blob_key()).is_none(),
        "released when the batch ended"
    );
}

#[tokio::test(start_paused = true)]
async fn an_unused_file_is_deleted_with_its_bytes_and_an_expired_one_is_purged() {
    let world = World::new();
    let deleted = upload(&world, vec![b"a\n"]).await.unwrap();
    delete_file(&world.deps, &tenant(), deleted.id.as_str())
        .await
        .unwrap();
    assert!(world.blobs.bytes(&deleted.blob_key()).is_none());

    let kept = upload(&world, vec![b"b\n"]).await.unwrap();
    let ttl = world.now().until(kept.expires_at.unwrap());
    world.advance(ttl + Duration::from_secs(1)).await;
    let report = reconcile(&world.deps).await.unwrap();

    assert_eq!(report.purged_files, 1);
    assert!(world.blobs.bytes(&kept.blob_key()).is_none());
}

//! Uploads: parts joined into one file and deleted, a complete repeated after a crash writing
//! the file it claimed, and the reconciler removing an abandoned upload with its parts.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prism_core::uploads::service::{add_part, complete_upload, create_upload};
use prism_core::uploads::{CompletionClaim, UPLOAD_RETENTION, UPLOAD_TTL, part_blob_key};

use crate::support::*;

async fn new_upload(world: &World, bytes: usize) -> prism_core::uploads::Upload {
    let body = format!(
        r#"{{"bytes": {bytes}, "filename": "in.jsonl", "mime_type": "application/jsonl", "purpose": "batch"}}"#
    );
    create_upload(&world.deps, &tenant(), body.as_bytes())
        .await
        .unwrap()
}

async fn part(world: &World, upload: &str, data: &'static [u8]) -> prism_core::uploads::UploadPart {
    let body = futures::stream::iter([Ok(Bytes::from_static(data))]).boxed();
    add_part(&world.deps, &tenant(), upload, body)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_completed_upload_keeps_one_file_and_no_parts() {
    let world = World::new();
    let upload = new_upload(&world, 8).await;
    let id = upload.id.as_str();
    let (a, b) = (
        part(&world, id, b"{\"a\":").await,
        part(&world, id, b"1}\n").await,
    );
    let body = format!(r#"{{"part_ids": ["{}", "{}"]}}"#, a.id, b.id);
    let (done, file) = complete_upload(&world.deps, &tenant(), id, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(done.file_id(), Some(&file.id));
    assert_eq!(
        world.blobs.bytes(&file.blob_key()).unwrap().as_ref(),
        b"{\"a\":1}\n"
    );
    for p in [&a, &b] {
        assert_eq!(world.blobs.bytes(&p.blob_key()), None, "parts are deleted");
    }
}

#[tokio::test(start_paused = true)]
async fn a_complete_repeated_after_a_crash_writes_the_file_it_claimed() {
    let world = World::new();
    let upload = new_upload(&world, 3).await;
    let id = upload.id.as_str();
    let a = part(&world, id, b"{}\n").await;
    // The first complete claimed a file id and then the process died before the file existed.
    let claimed = world.deps.ids.file_id(world.clock.now());
    let claim = CompletionClaim {
        file_id: claimed.clone(),
        part_ids: vec![a.id.clone()],
        md5: None,
    };
    assert!(
        world
            .deps
            .uploads
            .claim_completion(&tenant(), &upload.id, &claim, None)
            .await
            .unwrap()
    );
    assert!(
        get_file(&world.deps, &tenant(), claimed.as_str())
            .await
            .is_err()
    );
    let body = format!(r#"{{"part_ids": ["{}"]}}"#, a.id);
    let (_, file) = complete_upload(&world.deps, &tenant(), id, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(file.id, claimed);
    let (_, again) = complete_upload(&world.deps, &tenant(), id, body.as_bytes())
        .await
        .unwrap();
    assert_eq!(again.id, claimed, "and a repeat answers it again");
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_removes_an_abandoned_upload_with_its_parts() {
    let world = World::new();
    let upload = new_upload(&world, 10).await;
    let a = part(&world, upload.id.as_str(), b"{}\n").await;
    let key = part_blob_key(&tenant(), &upload.id, &a.id);
    assert!(world.blobs.bytes(&key).is_some());
    world
        .clock
        .advance(UPLOAD_TTL + UPLOAD_RETENTION + Duration::from_secs(1));
    let report = reconcile(&world.deps).await.unwrap();
    assert_eq!(report.purged_uploads, 1);
    assert_eq!(world.blobs.bytes(&key), None);
    assert!(
        world
            .deps
            .uploads
            .get(&tenant(), &upload.id)
            .await
            .unwrap()
            .is_none()
    );
}

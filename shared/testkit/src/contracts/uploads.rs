//! The `UploadStore` contract: uploads per tenant, parts only while pending and before expiry,
//! the completion claim, a complete that makes its file visible in the same write, cancel once,
//! and the purge of expired uploads. Its own fixture ([`UploadPorts`]) and macro
//! (`upload_contract!`), since a complete writes through to the `FileStore` of the same backend.

use prism_core::ports::UploadStore;
use prism_core::uploads::{CompletionClaim, UPLOAD_TTL, Upload, UploadPart, UploadStatus};

use super::*;

/// An upload store and the file store its completes write to, on one backend.
pub struct UploadPorts {
    pub uploads: Arc<dyn UploadStore>,
    pub files: Arc<dyn FileStore>,
    pub clock: Arc<dyn TestClock>,
}

fn new_upload(ids: &IdGenerator, owner: &str, now: Timestamp) -> Upload {
    Upload {
        id: ids.upload_id(now),
        tenant: tenant(owner),
        filename: "input.jsonl".into(),
        purpose: FilePurpose::Batch,
        bytes: 10,
        mime_type: "application/jsonl".into(),
        created_at: now,
        expires_at: now.plus(UPLOAD_TTL),
        file_expires_after: Some(Duration::from_secs(7200)),
        status: UploadStatus::Pending,
        completion: None,
    }
}

fn new_part(ids: &IdGenerator, upload: &Upload, bytes: u64) -> UploadPart {
    UploadPart {
        id: ids.part_id(upload.created_at),
        upload_id: upload.id.clone(),
        tenant: upload.tenant.clone(),
        bytes,
        created_at: upload.created_at,
    }
}

fn file_of(ids: &IdGenerator, upload: &Upload, now: Timestamp) -> FileRecord {
    FileRecord {
        id: ids.file_id(now),
        tenant: upload.tenant.clone(),
        purpose: upload.purpose,
        filename: upload.filename.clone(),
        bytes: upload.bytes,
        created_at: now,
        expires_at: Some(now.plus(HOUR * 2)),
    }
}

fn claim(file: &FileRecord, parts: &[&UploadPart]) -> CompletionClaim {
    CompletionClaim {
        file_id: file.id.clone(),
        part_ids: parts.iter().map(|p| p.id.clone()).collect(),
        md5: Some("0123456789abcdef0123456789abcdef".into()),
    }
}

pub async fn uploads_belong_to_their_tenant_and_keep_every_field(p: UploadPorts) {
    let ids = IdGenerator::new();
    let upload = new_upload(&ids, "alpha", p.clock.now());
    p.uploads.create(&upload).await.unwrap();
    assert_eq!(
        p.uploads.get(&tenant("alpha"), &upload.id).await.unwrap(),
        Some(upload.clone())
    );
    assert_eq!(
        p.uploads.get(&tenant("beta"), &upload.id).await.unwrap(),
        None
    );
    let unknown = ids.upload_id(p.clock.now());
    assert_eq!(
        p.uploads.get(&tenant("alpha"), &unknown).await.unwrap(),
        None
    );
}

pub async fn parts_are_recorded_only_while_pending_and_before_expiry(p: UploadPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let upload = new_upload(&ids, "alpha", now);
    p.uploads.create(&upload).await.unwrap();
    let (a, b) = (new_part(&ids, &upload, 4), new_part(&ids, &upload, 6));
    assert!(p.uploads.add_part(&a, now).await.unwrap());
    assert!(p.uploads.add_part(&b, now).await.unwrap());
    let late = new_part(&ids, &upload, 1);
    assert!(
        !p.uploads.add_part(&late, upload.expires_at).await.unwrap(),
        "an expired upload takes no parts"
    );
    let mut foreign = new_part(&ids, &upload, 1);
    foreign.tenant = tenant("beta");
    assert!(!p.uploads.add_part(&foreign, now).await.unwrap());
    let mut parts = p.uploads.parts(&tenant("alpha"), &upload.id).await.unwrap();
    parts.sort_by(|x, y| x.id.cmp(&y.id));
    assert_eq!(parts, vec![a, b]);
    assert!(
        p.uploads
            .parts(&tenant("beta"), &upload.id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        p.uploads
            .cancel(&tenant("alpha"), &upload.id, now)
            .await
            .unwrap()
    );
    assert!(
        !p.uploads
            .add_part(&new_part(&ids, &upload, 1), now)
            .await
            .unwrap(),
        "a cancelled upload takes no parts"
    );
}

pub async fn a_claim_replaces_only_the_claim_it_names(p: UploadPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let upload = new_upload(&ids, "alpha", now);
    p.uploads.create(&upload).await.unwrap();
    let part = new_part(&ids, &upload, 10);
    p.uploads.add_part(&part, now).await.unwrap();
    let (first, second) = (file_of(&ids, &upload, now), file_of(&ids, &upload, now));
    let alpha = tenant("alpha");
    assert!(
        !p.uploads
            .claim_completion(&tenant("beta"), &upload.id, &claim(&first, &[&part]), None)
            .await
            .unwrap()
    );
    assert!(
        p.uploads
            .claim_completion(&alpha, &upload.id, &claim(&first, &[&part]), None)
            .await
            .unwrap()
    );
    assert!(
        !p.uploads
            .claim_completion(&alpha, &upload.id, &claim(&second, &[&part]), None)
            .await
            .unwrap(),
        "a claim that names no previous one loses to the first"
    );
    assert!(
        p.uploads
            .claim_completion(
                &alpha,
                &upload.id,
                &claim(&second, &[&part]),
                Some(&first.id)
            )
            .await
            .unwrap()
    );
    let stored = p.uploads.get(&alpha, &upload.id).await.unwrap().unwrap();
    assert_eq!(stored.completion, Some(claim(&second, &[&part])));
    assert_eq!(stored.status, UploadStatus::Pending);
}

pub async fn complete_makes_the_file_visible_in_the_same_write_and_only_once(p: UploadPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let upload = new_upload(&ids, "alpha", now);
    p.uploads.create(&upload).await.unwrap();
    let part = new_part(&ids, &upload, 10);
    p.uploads.add_part(&part, now).await.unwrap();
    let alpha = tenant("alpha");
    let (claimed, stranger) = (file_of(&ids, &upload, now), file_of(&ids, &upload, now));
    assert!(
        !p.uploads
            .complete(&alpha, &upload.id, &claimed)
            .await
            .unwrap(),
        "no claim, no complete"
    );
    p.uploads
        .claim_completion(&alpha, &upload.id, &claim(&claimed, &[&part]), None)
        .await
        .unwrap();
    assert!(
        !p.uploads
            .complete(&alpha, &upload.id, &stranger)
            .await
            .unwrap()
    );
    assert_eq!(p.files.get(&alpha, &stranger.id, now).await.unwrap(), None);
    assert_eq!(p.files.get(&alpha, &claimed.id, now).await.unwrap(), None);
    assert!(
        p.uploads
            .complete(&alpha, &upload.id, &claimed)
            .await
            .unwrap()
    );
    assert_eq!(
        p.files.get(&alpha, &claimed.id, now).await.unwrap(),
        Some(claimed.clone())
    );
    let stored = p.uploads.get(&alpha, &upload.id).await.unwrap().unwrap();
    assert_eq!(stored.status, UploadStatus::Completed);
    assert_eq!(stored.file_id(), Some(&claimed.id));
    assert!(
        !p.uploads
            .complete(&alpha, &upload.id, &claimed)
            .await
            .unwrap()
    );
    assert!(!p.uploads.cancel(&alpha, &upload.id, now).await.unwrap());
    assert!(
        !p.uploads
            .add_part(&new_part(&ids, &upload, 1), now)
            .await
            .unwrap()
    );
    assert!(
        !p.uploads
            .claim_completion(
                &alpha,
                &upload.id,
                &claim(&stranger, &[&part]),
                Some(&claimed.id)
            )
            .await
            .unwrap(),
        "a completed upload takes no new claim"
    );
}

pub async fn cancel_is_once_for_its_tenant_and_only_before_expiry(p: UploadPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let (young, old) = (
        new_upload(&ids, "alpha", now),
        new_upload(&ids, "alpha", now),
    );
    p.uploads.create(&young).await.unwrap();
    p.uploads.create(&old).await.unwrap();
    let alpha = tenant("alpha");
    assert!(
        !p.uploads
            .cancel(&tenant("beta"), &young.id, now)
            .await
            .unwrap()
    );
    assert!(p.uploads.cancel(&alpha, &young.id, now).await.unwrap());
    assert!(!p.uploads.cancel(&alpha, &young.id, now).await.unwrap());
    assert_eq!(
        p.uploads
            .get(&alpha, &young.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        UploadStatus::Cancelled
    );
    assert!(
        !p.uploads
            .cancel(&alpha, &old.id, old.expires_at)
            .await
            .unwrap()
    );
}

pub async fn purge_takes_only_uploads_expired_before_the_cutoff_with_their_parts(p: UploadPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let old = new_upload(&ids, "alpha", now);
    let mut young = new_upload(&ids, "alpha", now);
    young.expires_at = now.plus(HOUR * 5);
    p.uploads.create(&old).await.unwrap();
    p.uploads.create(&young).await.unwrap();
    let part = new_part(&ids, &old, 10);
    p.uploads.add_part(&part, now).await.unwrap();
    let cutoff = old.expires_at.plus(Duration::from_secs(1));
    let purged = p.uploads.purge_expired(cutoff, 100).await.unwrap();
    // Stores that expire items themselves (DynamoDB TTL) return none; the others exactly the old.
    for (upload, parts) in &purged {
        assert_eq!(upload.id, old.id, "only the expired upload goes");
        assert_eq!(parts, &vec![part.clone()]);
    }
    if !purged.is_empty() {
        assert_eq!(
            p.uploads.get(&tenant("alpha"), &old.id).await.unwrap(),
            None
        );
    }
    assert!(
        p.uploads
            .get(&tenant("alpha"), &young.id)
            .await
            .unwrap()
            .is_some()
    );
}

/// Expands to one `#[tokio::test]` per `UploadStore` case, each on fresh ports.
#[macro_export]
macro_rules! upload_contract {
    ($fresh:path) => {
        $crate::upload_contract!(@cases $fresh;
            uploads_belong_to_their_tenant_and_keep_every_field,
            parts_are_recorded_only_while_pending_and_before_expiry,
            a_claim_replaces_only_the_claim_it_names,
            complete_makes_the_file_visible_in_the_same_write_and_only_once,
            cancel_is_once_for_its_tenant_and_only_before_expiry,
            purge_takes_only_uploads_expired_before_the_cutoff_with_their_parts,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contracts::$case($fresh().await).await;
            }
        )*
    };
}

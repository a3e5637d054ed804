//! The `FileStore` contract: records per tenant, deletion and expiry, paging both ways.

use super::*;

fn file_record(ids: &IdGenerator, owner: &str, now: Timestamp, purpose: FilePurpose) -> FileRecord {
    FileRecord {
        id: ids.file_id(now),
        tenant: tenant(owner),
        purpose,
        filename: "input.jsonl".into(),
        bytes: 42,
        created_at: now,
        expires_at: Some(now.plus(HOUR)),
    }
}

pub async fn file_records_belong_to_their_tenant_until_deleted_or_expired(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let file = file_record(&ids, "alpha", now, FilePurpose::Batch);
    p.files.create(&file).await.unwrap();
    assert_eq!(
        p.files.get(&tenant("alpha"), &file.id, now).await.unwrap(),
        Some(file.clone())
    );
    assert_eq!(
        p.files.get(&tenant("beta"), &file.id, now).await.unwrap(),
        None
    );
    assert_eq!(
        p.files
            .delete(&tenant("beta"), &file.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.files
            .get(&tenant("alpha"), &file.id, now.plus(HOUR))
            .await
            .unwrap(),
        None,
        "expired at its expires_at"
    );
    assert_eq!(
        p.files
            .delete(&tenant("alpha"), &file.id, now)
            .await
            .unwrap(),
        Some(file.clone())
    );
    assert_eq!(
        p.files
            .delete(&tenant("alpha"), &file.id, now)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.files.get(&tenant("alpha"), &file.id, now).await.unwrap(),
        None
    );
}

pub async fn file_list_pages_either_way_with_a_purpose_filter(p: Ports) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let mut made = Vec::new();
    for i in 0..5 {
        let purpose = if i == 2 {
            FilePurpose::BatchOutput
        } else {
            FilePurpose::Batch
        };
        let file = file_record(&ids, "alpha", now, purpose);
        p.files.create(&file).await.unwrap();
        made.push(file.id);
    }
    p.files
        .create(&file_record(&ids, "beta", now, FilePurpose::Batch))
        .await
        .unwrap();
    let query = |purpose, limit, after: Option<FileId>, order| FileListQuery {
        purpose,
        limit,
        after,
        order,
    };
    let ids_of = |page: &prism_core::list::Page<FileRecord>| {
        page.items.iter().map(|f| f.id.clone()).collect::<Vec<_>>()
    };
    let alpha = tenant("alpha");
    let first = p
        .files
        .list(&alpha, &query(None, 3, None, ListOrder::Desc), now)
        .await
        .unwrap();
    assert_eq!(
        ids_of(&first),
        vec![made[4].clone(), made[3].clone(), made[2].clone()]
    );
    assert!(first.has_more);
    let rest = p
        .files
        .list(
            &alpha,
            &query(None, 3, Some(made[2].clone()), ListOrder::Desc),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids_of(&rest), vec![made[1].clone(), made[0].clone()]);
    assert!(!rest.has_more);
    let ascending = p
        .files
        .list(
            &alpha,
            &query(
                Some(FilePurpose::Batch),
                10,
                Some(made[0].clone()),
                ListOrder::Asc,
            ),
            now,
        )
        .await
        .unwrap();
    assert_eq!(
        ids_of(&ascending),
        vec![made[1].clone(), made[3].clone(), made[4].clone()]
    );
    let outputs = p
        .files
        .list(
            &alpha,
            &query(Some(FilePurpose::BatchOutput), 10, None, ListOrder::Desc),
            now,
        )
        .await
        .unwrap();
    assert_eq!(ids_of(&outputs), vec![made[2].clone()]);
}

//! Uploads in DynamoDB: the `UploadStore` port. One item per upload under its owner's partition
//! (`pk = T#<tenant>#U`, `sk = <upload id>`), one per part under the upload's own partition
//! (`pk = T#<tenant>#U#<upload id>`), so a part is written without touching the upload item
//! (parts arrive in parallel) and listed with one query. A part is put in a transaction with a
//! condition check on its upload; a complete flips the upload and puts the file's item in one
//! transaction. Cleanup is TTL (a day past expiry) plus the bucket's lifecycle rule on
//! `uploads/` for the parts' bytes.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Put, TransactWriteItem, Update};
use prism_core::files::{FilePurpose, FileRecord};
use prism_core::ports::UploadStore;
use prism_core::uploads::{CompletionClaim, UPLOAD_RETENTION, Upload, UploadPart, UploadStatus};
use prism_core::{FileId, PartId, StoreError, TenantId, Timestamp, UploadId};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_n, get_s, get_ts, n, need_s, s, tenant_of_pk,
    tenant_pk, unavailable,
};
use crate::files::file_item;
use crate::write::{self, Written};

#[derive(Clone)]
pub struct DynamoUploadStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn upload_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "U")
}

fn parts_pk(tenant: &TenantId, upload: &UploadId) -> AttributeValue {
    tenant_pk(tenant, &format!("U#{upload}"))
}

fn key(tenant: &TenantId, id: &UploadId) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), upload_pk(tenant)),
        (SORT_KEY.to_owned(), s(id.as_str())),
    ])
}

/// TTL removes upload and part items this long after the upload's expiry, when no late call
/// needs the record to be answered 409 any more.
fn ttl_of(expires_at: Timestamp) -> AttributeValue {
    n(expires_at.plus(UPLOAD_RETENTION).unix_seconds() + 1)
}

fn count(v: u64) -> AttributeValue {
    n(i64::try_from(v).unwrap_or(i64::MAX))
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("upload item has a bad '{what}'"))
}

fn upload_from_item(item: &Item) -> Result<Upload, StoreError> {
    let number = |name: &str| {
        get_n(item, name)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| corrupt(name))
    };
    let completion = match get_s(item, "claim_file_id") {
        None => None,
        Some(file) => Some(CompletionClaim {
            file_id: FileId::parse(file).ok_or_else(|| corrupt("claim_file_id"))?,
            part_ids: item
                .get("claim_part_ids")
                .and_then(|v| v.as_l().ok())
                .ok_or_else(|| corrupt("claim_part_ids"))?
                .iter()
                .map(|v| {
                    v.as_s()
                        .ok()
                        .and_then(|id| PartId::parse(id))
                        .ok_or_else(|| corrupt("claim_part_ids"))
                })
                .collect::<Result<_, _>>()?,
            md5: get_s(item, "claim_md5").map(str::to_owned),
        }),
    };
    Ok(Upload {
        id: UploadId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of_pk(need_s(item, PARTITION_KEY)?, "U")
            .ok_or_else(|| corrupt(PARTITION_KEY))?,
        filename: need_s(item, "filename")?.to_owned(),
        purpose: FilePurpose::parse(need_s(item, "purpose")?).ok_or_else(|| corrupt("purpose"))?,
        bytes: number("bytes")?,
        mime_type: need_s(item, "mime_type")?.to_owned(),
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        expires_at: get_ts(item, "upload_expires_at")
            .ok_or_else(|| corrupt("upload_expires_at"))?,
        file_expires_after: get_n(item, "file_expires_after")
            .and_then(|v| u64::try_from(v).ok())
            .map(Duration::from_secs),
        status: UploadStatus::parse(need_s(item, "status")?).ok_or_else(|| corrupt("status"))?,
        completion,
    })
}

fn part_from_item(
    item: &Item,
    tenant: &TenantId,
    upload: &UploadId,
) -> Result<UploadPart, StoreError> {
    Ok(UploadPart {
        id: PartId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        upload_id: upload.clone(),
        tenant: tenant.clone(),
        bytes: get_n(item, "bytes")
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| corrupt("bytes"))?,
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
    })
}

impl DynamoUploadStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    /// The upload's item as read, for the TTL its parts share.
    async fn item(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant, id)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    async fn update(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        set: &str,
        condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<bool, StoreError> {
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(tenant, id)))
            .update_expression(set)
            .condition_expression(condition)
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(UploadStatus::Pending.as_str()));
        for (name, value) in values {
            update = update.expression_attribute_values(name, value);
        }
        Ok(matches!(write::update(update).await?, Written::Applied(_)))
    }
}

#[async_trait]
impl UploadStore for DynamoUploadStore {
    async fn create(&self, upload: &Upload) -> Result<(), StoreError> {
        let mut item = key(&upload.tenant, &upload.id);
        item.extend([
            ("filename".to_owned(), s(upload.filename.clone())),
            ("purpose".to_owned(), s(upload.purpose.as_str())),
            ("bytes".to_owned(), count(upload.bytes)),
            ("mime_type".to_owned(), s(upload.mime_type.clone())),
            ("created_at".to_owned(), n(upload.created_at.0)),
            // Not `expires_at`: an expired upload is still read (it answers 409, not 404).
            ("upload_expires_at".to_owned(), n(upload.expires_at.0)),
            ("status".to_owned(), s(upload.status.as_str())),
            (TTL_ATTRIBUTE.to_owned(), ttl_of(upload.expires_at)),
        ]);
        if let Some(after) = upload.file_expires_after {
            item.insert("file_expires_after".into(), count(after.as_secs()));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        // A refusal is this same put, applied by an earlier try whose answer was lost.
        write::put(put).await?;
        Ok(())
    }

    async fn get(&self, tenant: &TenantId, id: &UploadId) -> Result<Option<Upload>, StoreError> {
        self.item(tenant, id)
            .await?
            .map(|item| upload_from_item(&item))
            .transpose()
    }

    async fn add_part(&self, part: &UploadPart, now: Timestamp) -> Result<bool, StoreError> {
        let Some(upload) = self.item(&part.tenant, &part.upload_id).await? else {
            return Ok(false);
        };
        let ttl = upload
            .get(TTL_ATTRIBUTE)
            .cloned()
            .unwrap_or_else(|| ttl_of(now));
        let check = ConditionCheck::builder()
            .table_name(&self.table)
            .set_key(Some(key(&part.tenant, &part.upload_id)))
            .condition_expression("#st = :pending AND upload_expires_at > :now")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(UploadStatus::Pending.as_str()))
            .expression_attribute_values(":now", n(now.0))
            .build()
            .map_err(unavailable)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Item::from([
                (
                    PARTITION_KEY.to_owned(),
                    parts_pk(&part.tenant, &part.upload_id),
                ),
                (SORT_KEY.to_owned(), s(part.id.as_str())),
                ("bytes".to_owned(), count(part.bytes)),
                ("created_at".to_owned(), n(part.created_at.0)),
                (TTL_ATTRIBUTE.to_owned(), ttl),
            ])))
            .build()
            .map_err(unavailable)?;
        write::transact(
            &self.client,
            vec![
                TransactWriteItem::builder().condition_check(check).build(),
                TransactWriteItem::builder().put(put).build(),
            ],
        )
        .await
    }

    async fn parts(&self, tenant: &TenantId, id: &UploadId) -> Result<Vec<UploadPart>, StoreError> {
        let mut parts = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", parts_pk(tenant, id))
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in out.items() {
                parts.push(part_from_item(item, tenant, id)?);
            }
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(parts),
            }
        }
    }

    async fn claim_completion(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        claim: &CompletionClaim,
        previous: Option<&FileId>,
    ) -> Result<bool, StoreError> {
        let ids = claim
            .part_ids
            .iter()
            .map(|p| s(p.as_str()))
            .collect::<Vec<_>>();
        let mut set = "SET claim_file_id = :file, claim_part_ids = :parts".to_owned();
        let mut values = vec![
            (":file", s(claim.file_id.as_str())),
            (":parts", AttributeValue::L(ids)),
        ];
        match &claim.md5 {
            Some(md5) => {
                set.push_str(", claim_md5 = :md5");
                values.push((":md5", s(md5.clone())));
            }
            None => set.push_str(" REMOVE claim_md5"),
        }
        let condition = match previous {
            None => "#st = :pending AND attribute_not_exists(claim_file_id)",
            Some(previous) => {
                values.push((":previous", s(previous.as_str())));
                "#st = :pending AND claim_file_id = :previous"
            }
        };
        self.update(tenant, id, &set, condition, values).await
    }

    async fn complete(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        file: &FileRecord,
    ) -> Result<bool, StoreError> {
        let flip = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key(tenant, id)))
            .update_expression("SET #st = :completed")
            .condition_expression("#st = :pending AND claim_file_id = :file")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":pending", s(UploadStatus::Pending.as_str()))
            .expression_attribute_values(":completed", s(UploadStatus::Completed.as_str()))
            .expression_attribute_values(":file", s(file.id.as_str()))
            .build()
            .map_err(unavailable)?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(file_item(file)))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(unavailable)?;
        write::transact(
            &self.client,
            vec![
                TransactWriteItem::builder().update(flip).build(),
                TransactWriteItem::builder().put(put).build(),
            ],
        )
        .await
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &UploadId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.update(
            tenant,
            id,
            "SET #st = :cancelled",
            "#st = :pending AND upload_expires_at > :now",
            vec![
                (":cancelled", s(UploadStatus::Cancelled.as_str())),
                (":now", n(now.0)),
            ],
        )
        .await
    }

    async fn purge_expired(
        &self,
        _before: Timestamp,
        _limit: usize,
    ) -> Result<Vec<(Upload, Vec<UploadPart>)>, StoreError> {
        // TTL deletes the items, the bucket's lifecycle rule on `uploads/` the parts' bytes.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_partitions_name_their_tenant_and_parts_sit_apart() {
        let tenant = TenantId::parse("acme").unwrap();
        let pk = upload_pk(&tenant);
        assert_eq!(tenant_of_pk(pk.as_s().unwrap(), "U"), Some(tenant.clone()));
        let id = prism_core::ids::IdGenerator::new().upload_id(Timestamp(1));
        let parts = parts_pk(&tenant, &id);
        assert_eq!(tenant_of_pk(parts.as_s().unwrap(), "U"), None);
    }
}

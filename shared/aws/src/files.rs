//! File records in DynamoDB: the `FileStore` port. One item per file under the owner's partition
//! (`pk = T#<tenant>#F`, `sk = <file id>`), so reads are scoped by tenant and listing is a query
//! in key (creation) order either way. Expiry is DynamoDB's TTL plus the bucket's lifecycle rule
//! for the bytes; reads skip expired items themselves.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use prism_core::files::{FileListQuery, FilePurpose, FileRecord, ListOrder};
use prism_core::list::Page;
use prism_core::ports::FileStore;
use prism_core::{FileId, StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_n, get_ts, is_live, n, need_s, s,
    tenant_of_pk, tenant_pk, unavailable,
};
use crate::write;

#[derive(Clone)]
pub struct DynamoFileStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

fn file_pk(tenant: &TenantId) -> aws_sdk_dynamodb::types::AttributeValue {
    tenant_pk(tenant, "F")
}

/// The tenant of a partition of this kind.
fn tenant_of(pk: &str) -> Option<TenantId> {
    tenant_of_pk(pk, "F")
}

fn file_from_item(item: &Item) -> Result<FileRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("file item has a bad '{what}'"));
    Ok(FileRecord {
        id: FileId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of(need_s(item, PARTITION_KEY)?).ok_or_else(|| corrupt(PARTITION_KEY))?,
        purpose: FilePurpose::parse(need_s(item, "purpose")?).ok_or_else(|| corrupt("purpose"))?,
        filename: need_s(item, "filename")?.to_owned(),
        bytes: get_n(item, "bytes")
            .and_then(|b| u64::try_from(b).ok())
            .ok_or_else(|| corrupt("bytes"))?,
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        expires_at: get_ts(item, "expires_at"),
    })
}

/// A file's item; also what a completed upload puts in its own transaction.
pub(crate) fn file_item(file: &FileRecord) -> Item {
    let mut item = Item::from([
        (PARTITION_KEY.to_owned(), file_pk(&file.tenant)),
        (SORT_KEY.to_owned(), s(file.id.as_str())),
        ("purpose".to_owned(), s(file.purpose.as_str())),
        ("filename".to_owned(), s(file.filename.clone())),
        (
            "bytes".to_owned(),
            n(i64::try_from(file.bytes).unwrap_or(i64::MAX)),
        ),
        ("created_at".to_owned(), n(file.created_at.0)),
    ]);
    if let Some(expires_at) = file.expires_at {
        item.insert("expires_at".into(), n(expires_at.0));
        item.insert(TTL_ATTRIBUTE.into(), n(expires_at.unix_seconds() + 1));
    }
    item
}

impl DynamoFileStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }
}

#[async_trait]
impl FileStore for DynamoFileStore {
    async fn create(&self, file: &FileRecord) -> Result<(), StoreError> {
        let item = file_item(file);
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        // Ids are fresh, so a refusal is this same put, applied by an earlier try whose answer
        // was lost (the SDK sent it again): stored all the same.
        write::put(put).await?;
        Ok(())
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, file_pk(tenant))
            .key(SORT_KEY, s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        match out.item {
            Some(item) if is_live(&item, now) => Ok(Some(file_from_item(&item)?)),
            _ => Ok(None),
        }
    }

    async fn list(
        &self,
        tenant: &TenantId,
        query: &FileListQuery,
        now: Timestamp,
    ) -> Result<Page<FileRecord>, StoreError> {
        let mut filter = "(attribute_not_exists(expires_at) OR expires_at > :now)".to_owned();
        if query.purpose.is_some() {
            filter.push_str(" AND purpose = :purpose");
        }
        let mut start: Option<Item> = query.after.as_ref().map(|after| {
            Item::from([
                (PARTITION_KEY.to_owned(), file_pk(tenant)),
                (SORT_KEY.to_owned(), s(after.as_str())),
            ])
        });
        let want = query.limit + 1;
        let mut items: Vec<Item> = Vec::new();
        // A filter applies after the page limit, so read on until enough items matched.
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression(&filter)
                .expression_attribute_values(":pk", file_pk(tenant))
                .expression_attribute_values(":now", n(now.0))
                .scan_index_forward(query.order == ListOrder::Asc)
                .consistent_read(true)
                .limit(i32::try_from(want.min(1000)).unwrap_or(1000))
                .set_exclusive_start_key(start.take());
            if let Some(purpose) = query.purpose {
                request = request.expression_attribute_values(":purpose", s(purpose.as_str()));
            }
            let out = request.send().await.map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) if items.len() < want => start = Some(key),
                _ => break,
            }
        }
        let has_more = items.len() > query.limit;
        items.truncate(query.limit);
        Ok(Page {
            items: items.iter().map(file_from_item).collect::<Result<_, _>>()?,
            has_more,
        })
    }

    async fn delete(
        &self,
        tenant: &TenantId,
        id: &FileId,
        now: Timestamp,
    ) -> Result<Option<FileRecord>, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, file_pk(tenant))
            .key(SORT_KEY, s(id.as_str()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        match out.attributes {
            Some(item) if is_live(&item, now) => Ok(Some(file_from_item(&item)?)),
            _ => Ok(None),
        }
    }

    async fn purge_expired(
        &self,
        _now: Timestamp,
        _limit: usize,
    ) -> Result<Vec<FileRecord>, StoreError> {
        // TTL deletes the items and the bucket's lifecycle rule the bytes; reads skip both.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_partition_names_its_tenant() {
        let tenant = TenantId::parse("acme").unwrap();
        let pk = file_pk(&tenant);
        assert_eq!(tenant_of(pk.as_s().unwrap()), Some(tenant));
        assert_eq!(tenant_of("T#acme#J"), None);
    }
}

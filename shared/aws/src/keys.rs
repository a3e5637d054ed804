//! API key records in DynamoDB, one item per key hash (`pk = KEY#<sha256>`), so authentication
//! is a single consistent `GetItem`. Keys themselves are never stored.

use async_trait::async_trait;
use prism_core::keys::ApiKeyRecord;
use prism_core::ports::KeyStore;
use prism_core::{KeyId, StoreError, TenantId, Timestamp};

use crate::attrs::{Item, PARTITION_KEY, SORT_KEY, get_s, get_ts, n, need_s, s, unavailable};
use crate::write;

#[derive(Clone)]
pub struct DynamoKeyStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

const SK: &str = "KEY";

fn record_from_item(item: &Item) -> Result<ApiKeyRecord, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("key item has a bad '{what}'"));
    Ok(ApiKeyRecord {
        id: KeyId::parse(need_s(item, "key_id")?).ok_or_else(|| corrupt("key_id"))?,
        tenant: TenantId::parse(need_s(item, "tenant")?).ok_or_else(|| corrupt("tenant"))?,
        hash: need_s(item, PARTITION_KEY)?
            .trim_start_matches("KEY#")
            .to_owned(),
        display_prefix: need_s(item, "display_prefix")?.to_owned(),
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        revoked_at: get_ts(item, "revoked_at"),
    })
}

impl DynamoKeyStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    /// Every key item. Keys are few and listed only by operators, so a filtered scan is fine.
    async fn all(&self) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :sk")
                .expression_attribute_values(":sk", s(SK))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(items),
            }
        }
    }
}

#[async_trait]
impl KeyStore for DynamoKeyStore {
    async fn insert(&self, record: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut item = Item::from([
            (PARTITION_KEY.to_owned(), s(format!("KEY#{}", record.hash))),
            (SORT_KEY.to_owned(), s(SK)),
            ("key_id".to_owned(), s(record.id.as_str())),
            ("tenant".to_owned(), s(record.tenant.as_str())),
            (
                "display_prefix".to_owned(),
                s(record.display_prefix.clone()),
            ),
            ("created_at".to_owned(), n(record.created_at.0)),
        ]);
        if let Some(at) = record.revoked_at {
            item.insert("revoked_at".into(), n(at.0));
        }
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)");
        // The hash is of a fresh random key, so an item already under it was put by an earlier
        // try of this same write whose answer was lost (the SDK sent it again after its attempt
        // timeout): stored all the same. Before, that retry failed `prism keys create` on a slow
        // DynamoDB although the key was stored.
        write::put(put).await?;
        Ok(())
    }

    async fn find_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, s(format!("KEY#{hash}")))
            .key(SORT_KEY, s(SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        out.item.as_ref().map(record_from_item).transpose()
    }

    async fn list(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let mut records = self
            .all()
            .await?
            .iter()
            .map(record_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    async fn revoke(&self, id_or_prefix: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut revoked = false;
        for item in self.all().await? {
            let matches = get_s(&item, "key_id") == Some(id_or_prefix)
                || get_s(&item, "display_prefix") == Some(id_or_prefix);
            if !matches || item.contains_key("revoked_at") {
                continue;
            }
            let (Some(pk), Some(sk)) = (item.get(PARTITION_KEY), item.get(SORT_KEY)) else {
                continue;
            };
            self.client
                .update_item()
                .table_name(&self.table)
                .key(PARTITION_KEY, pk.clone())
                .key(SORT_KEY, sk.clone())
                .update_expression("SET revoked_at = :now")
                .expression_attribute_values(":now", n(now.0))
                .send()
                .await
                .map_err(unavailable)?;
            revoked = true;
        }
        Ok(revoked)
    }

    async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.all().await?.is_empty())
    }
}

//! `Idempotency-Key` records: one namespace per tenant for every kind of create (async,
//! scheduled and recurring), and what a create whose key was taken answers.

use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::ports::{CreateOutcome, IdempotencyClaim};
use prism_core::{JobId, StoreError, TenantId};

use super::item::ttl_seconds;
use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_s, n, need_s, s, tenant_pk, unavailable,
};

fn idempotency_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "IDEM")
}

/// The record of an `Idempotency-Key` naming the job or recurring schedule `id` (one namespace
/// per tenant for every kind of create).
pub(crate) fn idempotency_record(tenant: &TenantId, claim: &IdempotencyClaim, id: &JobId) -> Item {
    Item::from([
        (PARTITION_KEY.to_owned(), idempotency_pk(tenant)),
        (SORT_KEY.to_owned(), s(claim.key.clone())),
        ("body_hash".to_owned(), s(claim.body_hash.clone())),
        ("job_id".to_owned(), s(id.as_str())),
        ("expires_at".to_owned(), n(claim.expires_at.0)),
        (TTL_ATTRIBUTE.to_owned(), ttl_seconds(claim.expires_at)),
    ])
}

/// What a create whose key was taken answers: the id the key names.
pub(crate) async fn replayed_claim(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    tenant: &TenantId,
    claim: &IdempotencyClaim,
) -> Result<CreateOutcome, StoreError> {
    let out = client
        .get_item()
        .table_name(table)
        .key(PARTITION_KEY, idempotency_pk(tenant))
        .key(SORT_KEY, s(claim.key.clone()))
        .consistent_read(true)
        .send()
        .await
        .map_err(unavailable)?;
    let item = out.item.ok_or_else(|| {
        StoreError::Unavailable("idempotency record vanished during a create".into())
    })?;
    Ok(CreateOutcome::Replayed {
        job_id: JobId::parse(need_s(&item, "job_id")?)
            .ok_or_else(|| StoreError::Corrupt("idempotency record has a bad job id".into()))?,
        same_body: get_s(&item, "body_hash") == Some(claim.body_hash.as_str()),
    })
}

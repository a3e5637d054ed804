//! A job as a DynamoDB item: its keys, the item a create puts (the request spilled to S3 past
//! [`SPILL_BYTES`]) and the job read back from an item.

use aws_sdk_dynamodb::types::AttributeValue;
use prism_core::jobs::NewJob;
use prism_core::jobs::decisions;
use prism_core::{
    ApiEndpoint, Job, JobError, JobId, JobKind, JobStatus, StoreError, TenantId, Timestamp,
};

use super::{DynamoJobStore, RECONCILE_PREFIX, SPILL_BYTES};
use crate::attrs::{
    Item, PARTITION_KEY, RC_AT, RC_PK, SORT_KEY, get_n, get_s, get_ts, n, need_s, reconcile_shard,
    s, tenant_of_pk, tenant_pk,
};

pub(crate) fn job_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "J")
}

/// The tenant of a partition of this kind.
pub(super) fn tenant_of(pk: &str) -> Option<TenantId> {
    tenant_of_pk(pk, "J")
}

pub(super) fn ttl_seconds(expires_at: Timestamp) -> AttributeValue {
    n(expires_at.unix_seconds() + 1)
}

pub(super) fn job_from_item(item: &Item) -> Result<Job, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("job item has a bad '{what}'"));
    let pk = need_s(item, PARTITION_KEY)?;
    let error = get_s(item, "error")
        .map(serde_json::from_str::<JobError>)
        .transpose()
        .map_err(|_| corrupt("error"))?;
    Ok(Job {
        id: JobId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of(pk).ok_or_else(|| corrupt(PARTITION_KEY))?,
        kind: JobKind::parse(need_s(item, "kind")?).ok_or_else(|| corrupt("kind"))?,
        status: JobStatus::parse(need_s(item, "status")?).ok_or_else(|| corrupt("status"))?,
        // Absent: a job stored before jobs named their endpoint.
        endpoint: get_s(item, "endpoint")
            .map(|path| ApiEndpoint::from_path(path).ok_or_else(|| corrupt("endpoint")))
            .transpose()?
            .unwrap_or(ApiEndpoint::ChatCompletions),
        model: need_s(item, "model")?.to_owned(),
        created_at: get_ts(item, "created_at").ok_or_else(|| corrupt("created_at"))?,
        started_at: get_ts(item, "started_at"),
        completed_at: get_ts(item, "completed_at"),
        expires_at: get_ts(item, "expires_at"),
        result: get_s(item, "result").map(str::to_owned),
        error,
        attempts: get_n(item, "attempts")
            .and_then(|a| u32::try_from(a).ok())
            .unwrap_or(0),
        scheduled_at: get_ts(item, "scheduled_at"),
        scheduled_job_id: get_s(item, "scheduled_job_id")
            .map(|id| JobId::parse(id).ok_or_else(|| corrupt("scheduled_job_id")))
            .transpose()?,
        metadata: get_s(item, "metadata")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt("metadata"))?,
    })
}

impl DynamoJobStore {
    pub(super) async fn new_job_item(&self, job: &NewJob) -> Result<Item, StoreError> {
        let mut item = Item::from([
            (PARTITION_KEY.to_owned(), job_pk(&job.tenant)),
            (SORT_KEY.to_owned(), s(job.id.as_str())),
            ("kind".to_owned(), s(job.kind.as_str())),
            ("status".to_owned(), s(JobStatus::Pending.as_str())),
            ("model".to_owned(), s(job.model.clone())),
            ("created_at".to_owned(), n(job.created_at.0)),
            ("attempts".to_owned(), n(0)),
            (
                RC_PK.to_owned(),
                reconcile_shard(RECONCILE_PREFIX, job.id.as_str()),
            ),
            // The reconciler looks at a pending job once it is due (`quiet_since`); claims and
            // releases move `rc_at` to the lease's end, as the same rule says.
            (
                RC_AT.to_owned(),
                n(decisions::quiet_since(&job.to_job(), None)
                    .unwrap_or(job.created_at)
                    .0),
            ),
        ]);
        if let Some(at) = job.scheduled_at {
            item.insert("scheduled_at".into(), n(at.0));
        }
        item.insert("endpoint".into(), s(job.endpoint.path()));
        if let Some(schedule) = &job.scheduled_job_id {
            item.insert("scheduled_job_id".into(), s(schedule.as_str()));
        }
        if let Some(metadata) = &job.metadata {
            let json =
                serde_json::to_string(metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            item.insert("metadata".into(), s(json));
        }
        if job.request.len() > SPILL_BYTES {
            let key = format!("requests/{}/{}", job.tenant, job.id);
            self.blobs.put(&key, job.request.clone()).await?;
            item.insert("request_ref".into(), s(key));
        } else {
            item.insert(
                "request".into(),
                AttributeValue::B(job.request.to_vec().into()),
            );
        }
        Ok(item)
    }
}

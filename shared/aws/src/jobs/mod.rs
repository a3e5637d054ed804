//! Jobs in DynamoDB. One item per job under the owner's partition (`pk = T#<tenant>#J`,
//! `sk = <job id>`), so every read is scoped by tenant and listing is a base-table query in key
//! order. State transitions are conditional writes (`crate::write`), one round trip each: their
//! conditions are core's rules stated for DynamoDB ([`conditions`]: `CLAIMABLE` for
//! `decisions::claim_refusal`, `HOLDS_LEASE` for `decisions::holds`, `unfinished` enumerating
//! `JobStatus::UNFINISHED`), and a refused write is answered by asking
//! `prism_core::jobs::decisions` about the item as the refusal saw it; the contract suite holds
//! both stores to the same answers. A sparse, sharded GSI (`reconcile`) holds only unfinished
//! jobs, keyed by when the reconciler should look at them. Attributes over [`SPILL_BYTES`] go to
//! S3 ([`item`]). `ttl` (seconds) is set at the terminal transition only, and reads ignore
//! expired items themselves, since TTL deletion lags (and emulators never delete). This module
//! holds the store and its `JobStore` transitions.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};
use bytes::Bytes;
use prism_core::jobs::decisions::{self, CancelDecision};
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::list::{ListQuery, Page};
use prism_core::ports::{
    CancelOutcome, ClaimOutcome, CreateOutcome, IdempotencyClaim, JobStore, Lease,
};
use prism_core::responses::events::RecordedEvent;
use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};
use prism_core::webhooks::{EventKind, WebhookEvent};
use prism_core::{Job, JobError, JobId, JobKind, JobStatus, StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE, get_s, get_ts, is_live, n, s, unavailable,
};
use crate::blobs::S3Blobs;
use crate::queue::SqsWorkQueue;
use crate::reconcile_index::keys_due;
use crate::response_events;
use crate::usage;
use crate::webhooks::{event_put, relay};
use crate::write::{self, Written};

mod conditions;
mod idempotency;
mod item;

pub(crate) use conditions::IDEMPOTENCY_RECORD_FREE;
use conditions::{CLAIMABLE, UpdateJob, holding, unfinished};
pub(crate) use idempotency::{idempotency_record, replayed_claim};
pub(crate) use item::job_pk;
use item::{job_from_item, tenant_of, ttl_seconds};

/// Values larger than this are stored in S3 and referenced from the item, keeping items far
/// below DynamoDB's 400 KB limit.
pub const SPILL_BYTES: usize = 32 * 1024;

/// Jobs' shards of the reconcile index.
const RECONCILE_PREFIX: &str = "R#";

#[derive(Clone)]
pub struct DynamoJobStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    blobs: S3Blobs,
    /// Where a terminal write's webhook event is triggered (the webhooks queue).
    webhook_trigger: Option<SqsWorkQueue>,
}

impl DynamoJobStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, blobs: S3Blobs) -> Self {
        Self {
            client,
            table,
            blobs,
            webhook_trigger: None,
        }
    }

    pub fn with_webhook_trigger(mut self, queue: SqsWorkQueue) -> Self {
        self.webhook_trigger = Some(queue);
        self
    }

    /// Applies a terminal update together with its webhook event (the outbox) and the usage
    /// it counts, all or nothing, then triggers the event's delivery.
    async fn finish_with_event(
        &self,
        job: &JobRef,
        status: JobStatus,
        update: &aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder,
        counts: &[UsageCount],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut others = usage::counter_updates(&self.table, &job.tenant, job.id.as_str(), counts)?;
        let event = EventKind::of_job(job.id.kind(), status)
            .map(|kind| WebhookEvent::for_subject(&job.tenant, kind, job.id.as_str(), now));
        if let Some(event) = &event {
            others.push(event_put(&self.table, event)?);
        }
        let applied = write::update_with(&self.client, update, others).await?;
        if applied && let Some(event) = &event {
            relay(self.webhook_trigger.as_ref(), event).await;
        }
        Ok(applied)
    }

    async fn item(&self, job: &JobRef) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, job_pk(&job.tenant))
            .key(SORT_KEY, s(job.id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// The job with a spilled result read back from S3.
    async fn hydrate(&self, item: &Item) -> Result<Job, StoreError> {
        let mut job = job_from_item(item)?;
        if let Some(key) = get_s(item, "result_ref") {
            let bytes = self.blobs.read_all(key).await?;
            job.result = Some(
                String::from_utf8(bytes.to_vec())
                    .map_err(|_| StoreError::Corrupt("spilled result is not UTF-8".into()))?,
            );
        }
        Ok(job)
    }

    fn update(&self, job: &JobRef) -> UpdateJob {
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, job_pk(&job.tenant))
            .key(SORT_KEY, s(job.id.as_str()))
            .expression_attribute_names("#s", "status")
    }

    async fn replayed(
        &self,
        tenant: &TenantId,
        claim: &IdempotencyClaim,
    ) -> Result<CreateOutcome, StoreError> {
        replayed_claim(&self.client, &self.table, tenant, claim).await
    }
}

#[async_trait]
impl JobStore for DynamoJobStore {
    async fn create(
        &self,
        job: &NewJob,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let item = self.new_job_item(job).await?;
        let Some(claim) = idempotency else {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)");
            // Ids are fresh, so an item already under this one was put by an earlier try of this
            // same write whose answer was lost (the SDK sent it again): created all the same.
            write::put(put).await?;
            return Ok(CreateOutcome::Created { triggered: false });
        };
        let record = idempotency_record(&job.tenant, claim, &job.id);
        let put = |put: aws_sdk_dynamodb::types::builders::PutBuilder, item: Item| {
            put.table_name(&self.table)
                .set_item(Some(item))
                .build()
                .map(|p| TransactWriteItem::builder().put(p).build())
                .map_err(unavailable)
        };
        let record_put = put(
            Put::builder()
                .condition_expression(IDEMPOTENCY_RECORD_FREE)
                .expression_attribute_values(":now", n(job.created_at.0)),
            record,
        )?;
        let job_put = put(
            Put::builder().condition_expression("attribute_not_exists(pk)"),
            item,
        )?;
        if write::transact(&self.client, vec![record_put, job_put]).await? {
            Ok(CreateOutcome::Created { triggered: false })
        } else {
            // The key is taken (the job id is new): answer with the job that took it.
            self.replayed(&job.tenant, claim).await
        }
    }

    async fn get(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
    ) -> Result<Option<Job>, StoreError> {
        let job = JobRef {
            tenant: tenant.clone(),
            id: id.clone(),
        };
        match self.item(&job).await? {
            Some(item) if is_live(&item, now) => Ok(Some(self.hydrate(&item).await?)),
            _ => Ok(None),
        }
    }

    async fn request_body(&self, job: &JobRef) -> Result<Option<Bytes>, StoreError> {
        let Some(item) = self.item(job).await? else {
            return Ok(None);
        };
        if let Some(key) = get_s(&item, "request_ref") {
            return Ok(Some(self.blobs.read_all(key).await?));
        }
        Ok(item
            .get("request")
            .and_then(|v| v.as_b().ok())
            .map(|b| Bytes::copy_from_slice(b.as_ref())))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        query: &ListQuery,
        now: Timestamp,
    ) -> Result<Page<Job>, StoreError> {
        let mut filter = "(attribute_not_exists(expires_at) OR expires_at > :now)".to_owned();
        if query.status.is_some() {
            filter.push_str(" AND #s = :status");
        }
        // A schedule's runs: a filter over the tenant's jobs (a GSI keyed by schedule would
        // read only the runs; fine while a tenant's jobs are few thousand).
        if query.scheduled_job_id.is_some() {
            filter.push_str(" AND scheduled_job_id = :schedule");
        }
        let mut start: Option<Item> = query.after.as_ref().map(|after| {
            Item::from([
                (PARTITION_KEY.to_owned(), job_pk(tenant)),
                (SORT_KEY.to_owned(), s(after.as_str())),
            ])
        });
        let want = query.limit + 1;
        let mut items: Vec<Item> = Vec::with_capacity(want);
        // A filter applies after the page limit, so read on until enough items matched.
        loop {
            let mut request = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .filter_expression(&filter)
                .expression_attribute_values(":pk", job_pk(tenant))
                .expression_attribute_values(":prefix", s(JobId::prefix(kind)))
                .expression_attribute_values(":now", n(now.0))
                .scan_index_forward(false)
                .consistent_read(true)
                .limit(i32::try_from(want).unwrap_or(i32::MAX))
                .set_exclusive_start_key(start.take());
            if let Some(schedule) = &query.scheduled_job_id {
                request = request.expression_attribute_values(":schedule", s(schedule.as_str()));
            }
            if let Some(status) = query.status {
                request = request
                    .expression_attribute_names("#s", "status")
                    .expression_attribute_values(":status", s(status.as_str()));
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
        let mut jobs = Vec::with_capacity(items.len());
        for item in &items {
            jobs.push(self.hydrate(item).await?);
        }
        Ok(Page {
            items: jobs,
            has_more,
        })
    }

    async fn claim(
        &self,
        job: &JobRef,
        lease: &Lease,
        now: Timestamp,
    ) -> Result<ClaimOutcome, StoreError> {
        let update = self
            .update(job)
            .update_expression(
                "SET #s = :running, lease_token = :token, lease_expires_at = :until, rc_at = :until, \
                 started_at = if_not_exists(started_at, :now) ADD attempts :one",
            )
            .condition_expression(CLAIMABLE)
            .expression_attribute_values(":running", s(JobStatus::Running.as_str()))
            .expression_attribute_values(":pending", s(JobStatus::Pending.as_str()))
            .expression_attribute_values(":token", s(lease.token.clone()))
            .expression_attribute_values(":until", n(lease.expires_at.0))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        match write::update(update).await? {
            Written::Applied(item) => Ok(ClaimOutcome::Claimed(job_from_item(
                &item.unwrap_or_default(),
            )?)),
            Written::Refused(seen) => {
                let held_until = seen
                    .as_ref()
                    .filter(|old| get_s(old, "lease_token").is_some())
                    .and_then(|old| get_ts(old, "lease_expires_at"));
                let current = seen.as_ref().map(job_from_item).transpose()?;
                let seen_token = seen.as_ref().and_then(|old| get_s(old, "lease_token"));
                if let Some(job) = current
                    .as_ref()
                    .filter(|job| decisions::claim_was_applied(job, seen_token, &lease.token))
                {
                    return Ok(ClaimOutcome::Claimed(job.clone()));
                }
                // Refused, yet claimable as seen: it changed in between; busy brings the message
                // back after the lease instead of dropping it.
                Ok(
                    decisions::claim_refusal(current.as_ref(), held_until, now).unwrap_or(
                        ClaimOutcome::Busy {
                            lease_expires_at: held_until.unwrap_or(now),
                        },
                    ),
                )
            }
        }
    }

    async fn begin_attempt(
        &self,
        job: &JobRef,
        token: &str,
        attempt: u32,
        lease_until: Timestamp,
    ) -> Result<bool, StoreError> {
        // A set, not `ADD`: the SDK sends a write again when its answer is lost, and the second
        // one, still holding the token, must not count the attempt twice.
        let update = holding(self.update(job), token)
            .update_expression("SET lease_expires_at = :until, rc_at = :until, attempts = :attempt")
            .expression_attribute_values(":until", n(lease_until.0))
            .expression_attribute_values(":attempt", n(i64::from(attempt)));
        Ok(write::update(update).await?.applied())
    }

    async fn release(
        &self,
        job: &JobRef,
        token: &str,
        retry_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let update = holding(self.update(job), token)
            .update_expression("SET lease_expires_at = :at, rc_at = :at REMOVE lease_token")
            .expression_attribute_values(":at", n(retry_at.0));
        Ok(write::update(update).await?.applied())
    }

    async fn finish(
        &self,
        job: &JobRef,
        token: &str,
        outcome: &Finish,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut update = holding(self.update(job), token)
            .expression_attribute_values(":status", s(outcome.status().as_str()))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":expires", n(expires_at.0))
            .expression_attribute_values(":ttl", ttl_seconds(expires_at));
        // DynamoDB rejects unused placeholders, so each arm names only what it sets.
        let set = match outcome {
            Finish::Completed { result, .. } if result.len() > SPILL_BYTES => {
                // Unique per attempt: a stale worker's upload can never replace the winner's.
                let key = format!("results/{}/{}/{token}", job.tenant, job.id);
                self.blobs.put(&key, Bytes::from(result.clone())).await?;
                update = update.expression_attribute_values(":result_ref", s(key));
                "result_ref = :result_ref"
            }
            Finish::Completed { result, .. } => {
                update = update
                    .expression_attribute_names("#r", "result")
                    .expression_attribute_values(":result", s(result.clone()));
                "#r = :result"
            }
            Finish::Failed { error } => {
                let json =
                    serde_json::to_string(error).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                update = update
                    .expression_attribute_names("#e", "error")
                    .expression_attribute_values(":error", s(json));
                "#e = :error"
            }
        };
        let update = update
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .update_expression(format!(
                "SET #s = :status, {set}, completed_at = :now, expires_at = :expires, #ttl = :ttl \
                 REMOVE lease_token, lease_expires_at, rc_pk, rc_at"
            ));
        let counts: &[UsageCount] = match outcome {
            Finish::Completed {
                counted: Some(count),
                ..
            } => std::slice::from_ref(count),
            _ => &[],
        };
        self.finish_with_event(job, outcome.status(), &update, counts, now)
            .await
    }

    async fn usage_counts(
        &self,
        tenant: &TenantId,
        from: Day,
        to: Day,
    ) -> Result<Vec<UsageCount>, StoreError> {
        usage::read(
            &self.client,
            &self.table,
            tenant,
            from,
            to,
            &UsageKind::OF_JOBS,
        )
        .await
    }

    async fn still_holds(&self, job: &JobRef, token: &str) -> Result<bool, StoreError> {
        Ok(self.item(job).await?.is_some_and(|item| {
            get_s(&item, "status")
                .and_then(JobStatus::parse)
                .is_some_and(|status| decisions::holds(status, get_s(&item, "lease_token"), token))
        }))
    }

    async fn cancel(
        &self,
        tenant: &TenantId,
        id: &JobId,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<CancelOutcome, StoreError> {
        let job = JobRef {
            tenant: tenant.clone(),
            id: id.clone(),
        };
        let update = unfinished(self.update(&job), "attribute_exists(pk) AND")
            .update_expression(
                "SET #s = :cancelled, completed_at = :now, expires_at = :expires, #ttl = :ttl \
                 REMOVE lease_token, lease_expires_at, rc_pk, rc_at",
            )
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":cancelled", s(JobStatus::Cancelled.as_str()))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":expires", n(expires_at.0))
            .expression_attribute_values(":ttl", ttl_seconds(expires_at));
        // A transaction returns no item: the job is read back (consistently) after it, both
        // to answer with it and to decide a refusal.
        let applied = self
            .finish_with_event(&job, JobStatus::Cancelled, &update, &[], now)
            .await?;
        let seen = self.item(&job).await?;
        match (applied, seen) {
            (true, item) => Ok(CancelOutcome::Cancelled(job_from_item(
                &item.unwrap_or_default(),
            )?)),
            (false, seen) => {
                // A spilled result is read only for a job that is still kept.
                let current = match seen {
                    Some(old) if is_live(&old, now) => Some(self.hydrate(&old).await?),
                    _ => None,
                };
                match decisions::cancel_outcome(current, now, expires_at) {
                    CancelDecision::Answer(outcome) => Ok(outcome),
                    // Refused, yet cancellable as seen: no transition leads back to unfinished.
                    CancelDecision::Cancel(_) => Err(StoreError::Unavailable(format!(
                        "cancel of {id} raced with an unexpected transition"
                    ))),
                }
            }
        }
    }

    async fn fail_unfinished(
        &self,
        job: &JobRef,
        error: &JobError,
        now: Timestamp,
        expires_at: Timestamp,
    ) -> Result<bool, StoreError> {
        let json = serde_json::to_string(error).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let update = unfinished(self.update(job), "")
            .update_expression(
                "SET #s = :failed, #e = :error, completed_at = :now, expires_at = :expires, #ttl = :ttl \
                 REMOVE lease_token, lease_expires_at, rc_pk, rc_at",
            )
            .expression_attribute_names("#e", "error")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":failed", s(JobStatus::Failed.as_str()))
            .expression_attribute_values(":error", s(json))
            .expression_attribute_values(":now", n(now.0))
            .expression_attribute_values(":expires", n(expires_at.0))
            .expression_attribute_values(":ttl", ttl_seconds(expires_at));
        self.finish_with_event(job, JobStatus::Failed, &update, &[], now)
            .await
    }

    async fn stranded(&self, before: Timestamp, limit: usize) -> Result<Vec<JobRef>, StoreError> {
        let keys = keys_due(&self.client, &self.table, RECONCILE_PREFIX, before, limit).await?;
        Ok(keys
            .iter()
            .filter_map(|(pk, sk)| {
                Some(JobRef {
                    tenant: tenant_of(pk)?,
                    id: JobId::parse(sk)?,
                })
            })
            .collect())
    }

    async fn purge_expired(&self, _now: Timestamp, _limit: usize) -> Result<u64, StoreError> {
        // DynamoDB's TTL deletes expired items (and reads already skip them); S3 copies expire
        // by the bucket's lifecycle rule. Nothing to do here.
        Ok(0)
    }

    async fn append_events(
        &self,
        job: &JobRef,
        token: &str,
        events: &[RecordedEvent],
    ) -> Result<bool, StoreError> {
        response_events::append(&self.client, &self.table, &self.blobs, job, token, events).await
    }

    async fn events_after(
        &self,
        job: &JobRef,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        response_events::after(&self.client, &self.table, &self.blobs, job, after, limit).await
    }
}

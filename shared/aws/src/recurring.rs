//! Recurring schedules on AWS. The `RecurringStore` port in DynamoDB: one item per schedule in
//! the state table under the owner's partition (`pk = T#<tenant>#R`, `sk = <id>`), every change
//! conditional on its `version`. The `RecurringTrigger` port over EventBridge Scheduler: one
//! recurring `cron(...)` schedule per job, in the job's time zone with its start and end dates,
//! whose target sends a firing (`{"v":1,"fire":{...,"at":"<aws.scheduler.scheduled-time>"}}`)
//! to the jobs queue, where the run is made idempotently. Pause and resume set the schedule's
//! state; finishing or deleting removes it.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_scheduler::primitives::DateTime;
use aws_sdk_scheduler::types::{
    DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState,
    Target,
};
use bytes::Bytes;
use prism_core::list::Page;
use prism_core::ports::{CreateOutcome, IdempotencyClaim, RecurringStore, RecurringTrigger};
use prism_core::recurring::cron::eventbridge_expression;
use prism_core::recurring::{Recurrence, Recurring, RecurringRef, RecurringStatus};
use prism_core::{ApiEndpoint, JobId, StoreError, TenantId, Timestamp};

use crate::attrs::{
    Item, PARTITION_KEY, SORT_KEY, get_n, get_s, get_ts, n, need_s, s, tenant_of_pk, tenant_pk,
    unavailable,
};
use crate::blobs::S3Blobs;
use crate::jobs::{IDEMPOTENCY_RECORD_FREE, SPILL_BYTES, idempotency_record, replayed_claim};
use crate::queue::{SCHEDULED_TIME, encode_firing};
use crate::schedules::{ScheduleTarget, delete_schedule};
use crate::write;

/// EventBridge retries a firing this long (1 h) before its dead-letter queue: a firing later
/// than that would be a catch-up the next fire time makes anyway.
const MAX_EVENT_AGE_SECONDS: i32 = 3600;
const MAX_RETRY_ATTEMPTS: i32 = 185;

fn recurring_pk(tenant: &TenantId) -> AttributeValue {
    tenant_pk(tenant, "R")
}

fn opt_n(item: &mut Item, name: &str, value: Option<i64>) {
    match value {
        Some(v) => item.insert(name.to_owned(), n(v)),
        None => item.insert(name.to_owned(), AttributeValue::Null(true)),
    };
}

fn schedule_from_item(item: &Item) -> Result<Recurring, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("recurring item has a bad '{what}'"));
    let ts = |name: &str| get_ts(item, name);
    let recurrence = Recurrence::from_stored(
        need_s(item, "cron")?,
        need_s(item, "timezone")?,
        ts("start_at"),
        ts("end_at"),
        get_n(item, "max_runs").and_then(|m| u32::try_from(m).ok()),
        need_s(item, "overlap")?,
        need_s(item, "catch_up")?,
    )
    .ok_or_else(|| corrupt("recurrence"))?;
    let count = |name: &str| {
        get_n(item, name)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or(0)
    };
    Ok(Recurring {
        id: JobId::parse(need_s(item, SORT_KEY)?).ok_or_else(|| corrupt(SORT_KEY))?,
        tenant: tenant_of_pk(need_s(item, PARTITION_KEY)?, "R")
            .ok_or_else(|| corrupt(PARTITION_KEY))?,
        status: RecurringStatus::parse(need_s(item, "status")?).ok_or_else(|| corrupt("status"))?,
        // Absent: a schedule stored before schedules named their endpoint.
        endpoint: get_s(item, "endpoint")
            .map(|path| ApiEndpoint::from_path(path).ok_or_else(|| corrupt("endpoint")))
            .transpose()?
            .unwrap_or(ApiEndpoint::ChatCompletions),
        model: need_s(item, "model")?.to_owned(),
        metadata: get_s(item, "metadata")
            .map(serde_json::from_str)
            .transpose()
            .map_err(|_| corrupt("metadata"))?,
        recurrence,
        created_at: ts("created_at").ok_or_else(|| corrupt("created_at"))?,
        next_run_at: ts("next_run_at"),
        last_run_at: ts("last_run_at"),
        last_fire_at: ts("last_fire_at"),
        run_count: count("run_count"),
        skipped_count: count("skipped_count"),
        ended_at: ts("ended_at"),
        version: get_n(item, "version").ok_or_else(|| corrupt("version"))?,
    })
}

#[derive(Clone)]
pub struct DynamoRecurringStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
    /// Request bodies over [`SPILL_BYTES`], as for jobs.
    blobs: S3Blobs,
}

impl DynamoRecurringStore {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, blobs: S3Blobs) -> Self {
        Self {
            client,
            table,
            blobs,
        }
    }

    async fn item(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, recurring_pk(tenant))
            .key(SORT_KEY, s(id.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }
}

#[async_trait]
impl RecurringStore for DynamoRecurringStore {
    async fn create(
        &self,
        sch: &Recurring,
        request: &Bytes,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        let r = &sch.recurrence;
        let mut item = Item::from([
            (PARTITION_KEY.to_owned(), recurring_pk(&sch.tenant)),
            (SORT_KEY.to_owned(), s(sch.id.as_str())),
            ("status".to_owned(), s(sch.status.as_str())),
            ("model".to_owned(), s(sch.model.clone())),
            ("endpoint".to_owned(), s(sch.endpoint.path())),
            ("cron".to_owned(), s(r.cron.as_str())),
            ("timezone".to_owned(), s(r.timezone.clone())),
            ("overlap".to_owned(), s(r.overlap.as_str())),
            ("catch_up".to_owned(), s(r.catch_up.as_str())),
            ("created_at".to_owned(), n(sch.created_at.0)),
            ("run_count".to_owned(), n(i64::from(sch.run_count))),
            ("skipped_count".to_owned(), n(i64::from(sch.skipped_count))),
            ("version".to_owned(), n(sch.version)),
        ]);
        if request.len() > SPILL_BYTES {
            let key = format!("requests/{}/{}", sch.tenant, sch.id);
            self.blobs.put(&key, request.clone()).await?;
            item.insert("request_ref".into(), s(key));
        } else {
            item.insert("request".into(), AttributeValue::B(request.to_vec().into()));
        }
        if let Some(metadata) = &sch.metadata {
            let json =
                serde_json::to_string(metadata).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            item.insert("metadata".into(), s(json));
        }
        opt_n(&mut item, "start_at", r.start_at.map(|t| t.0));
        opt_n(&mut item, "end_at", r.end_at.map(|t| t.0));
        opt_n(&mut item, "max_runs", r.max_runs.map(i64::from));
        opt_n(&mut item, "next_run_at", sch.next_run_at.map(|t| t.0));
        let Some(claim) = idempotency else {
            let put = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)");
            write::put(put).await?;
            return Ok(CreateOutcome::Created { triggered: false });
        };
        // The key's record and the schedule in one transaction, as a job create writes them.
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
                .expression_attribute_values(":now", n(sch.created_at.0)),
            idempotency_record(&sch.tenant, claim, &sch.id),
        )?;
        let schedule_put = put(
            Put::builder().condition_expression("attribute_not_exists(pk)"),
            item,
        )?;
        if write::transact(&self.client, vec![record_put, schedule_put]).await? {
            Ok(CreateOutcome::Created { triggered: false })
        } else {
            replayed_claim(&self.client, &self.table, &sch.tenant, claim).await
        }
    }

    async fn get(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Recurring>, StoreError> {
        self.item(tenant, id)
            .await?
            .as_ref()
            .map(schedule_from_item)
            .transpose()
    }

    async fn request_body(&self, sch: &RecurringRef) -> Result<Option<Bytes>, StoreError> {
        let item = self.item(&sch.tenant, &sch.id).await?;
        if let Some(key) = item.as_ref().and_then(|i| get_s(i, "request_ref")) {
            return Ok(Some(self.blobs.read_all(key).await?));
        }
        Ok(item.and_then(|item| {
            item.get("request")
                .and_then(|v| v.as_b().ok())
                .map(|b| Bytes::copy_from_slice(b.as_ref()))
        }))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&JobId>,
    ) -> Result<Page<Recurring>, StoreError> {
        let start = after.map(|after| {
            Item::from([
                (PARTITION_KEY.to_owned(), recurring_pk(tenant)),
                (SORT_KEY.to_owned(), s(after.as_str())),
            ])
        });
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", recurring_pk(tenant))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(limit + 1).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(unavailable)?;
        let mut items = out
            .items
            .unwrap_or_default()
            .iter()
            .map(schedule_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    async fn count_live(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        let mut count = 0usize;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .filter_expression("#s IN (:active, :paused)")
                .expression_attribute_names("#s", "status")
                .expression_attribute_values(":pk", recurring_pk(tenant))
                .expression_attribute_values(":active", s(RecurringStatus::Active.as_str()))
                .expression_attribute_values(":paused", s(RecurringStatus::Paused.as_str()))
                .select(aws_sdk_dynamodb::types::Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            count += usize::try_from(out.count).unwrap_or(0);
            match out.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(count),
            }
        }
    }

    async fn update(&self, next: &Recurring) -> Result<bool, StoreError> {
        let value = |t: Option<Timestamp>| t.map_or(AttributeValue::Null(true), |t| n(t.0));
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PARTITION_KEY, recurring_pk(&next.tenant))
            .key(SORT_KEY, s(next.id.as_str()))
            .update_expression(
                "SET #s = :status, next_run_at = :next, last_run_at = :last_run, \
                 last_fire_at = :last_fire, run_count = :runs, skipped_count = :skipped, \
                 ended_at = :ended, version = :new_version",
            )
            .condition_expression("version = :version")
            .expression_attribute_names("#s", "status")
            .expression_attribute_values(":status", s(next.status.as_str()))
            .expression_attribute_values(":next", value(next.next_run_at))
            .expression_attribute_values(":last_run", value(next.last_run_at))
            .expression_attribute_values(":last_fire", value(next.last_fire_at))
            .expression_attribute_values(":runs", n(i64::from(next.run_count)))
            .expression_attribute_values(":skipped", n(i64::from(next.skipped_count)))
            .expression_attribute_values(":ended", value(next.ended_at))
            .expression_attribute_values(":version", n(next.version))
            .expression_attribute_values(":new_version", n(next.version + 1));
        Ok(write::update(update).await?.applied())
    }
}

/// The EventBridge schedule of a recurring job, named after it (unique, 32 characters).
pub fn recurring_schedule_name(id: &JobId) -> String {
    id.as_str().to_owned()
}

#[derive(Clone)]
pub struct EventBridgeRecurringTrigger {
    client: aws_sdk_scheduler::Client,
    target: ScheduleTarget,
}

fn date(at: Timestamp) -> DateTime {
    DateTime::from_millis(at.0)
}

impl EventBridgeRecurringTrigger {
    pub fn new(client: aws_sdk_scheduler::Client, target: ScheduleTarget) -> Self {
        Self { client, target }
    }

    fn target(&self, sch: &Recurring) -> Result<Target, StoreError> {
        Target::builder()
            .arn(&self.target.queue_arn)
            .role_arn(&self.target.role_arn)
            .input(encode_firing(&sch.tenant, &sch.id, SCHEDULED_TIME))
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .build(),
            )
            .dead_letter_config(
                DeadLetterConfig::builder()
                    .arn(&self.target.dead_letter_arn)
                    .build(),
            )
            .build()
            .map_err(unavailable)
    }

    /// Creates the schedule, or (`update`) replaces it whole, as UpdateSchedule requires.
    async fn put(
        &self,
        sch: &Recurring,
        state: ScheduleState,
        update: bool,
    ) -> Result<(), StoreError> {
        let r = &sch.recurrence;
        let expression = eventbridge_expression(&r.cron).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "'{}' has a seconds field, which EventBridge cannot run",
                r.cron.as_str()
            ))
        })?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(unavailable)?;
        let target = self.target(sch)?;
        let name = recurring_schedule_name(&sch.id);
        let (start, end) = (r.start_at.map(date), r.end_at.map(date));
        let result = if update {
            self.client
                .update_schedule()
                .name(name)
                .group_name(&self.target.group)
                .schedule_expression(expression)
                .schedule_expression_timezone(&r.timezone)
                .set_start_date(start)
                .set_end_date(end)
                .flexible_time_window(window)
                .target(target)
                .state(state.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    if e.as_service_error()
                        .is_some_and(|e| e.is_resource_not_found_exception())
                    {
                        None
                    } else {
                        Some(unavailable(e))
                    }
                })
        } else {
            self.client
                .create_schedule()
                .name(name)
                .group_name(&self.target.group)
                .schedule_expression(expression)
                .schedule_expression_timezone(&r.timezone)
                .set_start_date(start)
                .set_end_date(end)
                .flexible_time_window(window)
                .target(target)
                .state(state.clone())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    // Created by an earlier try of this same call.
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conflict_exception())
                    {
                        None
                    } else {
                        Some(unavailable(e))
                    }
                })
        };
        match result {
            Ok(()) | Err(None) if !update => Ok(()),
            Ok(()) => Ok(()),
            // Gone (deleted by a racing finish): create it in the asked-for state.
            Err(None) => Box::pin(self.put(sch, state, false)).await,
            Err(Some(error)) => Err(error),
        }
    }
}

#[async_trait]
impl RecurringTrigger for EventBridgeRecurringTrigger {
    async fn arm(&self, sch: &Recurring) -> Result<(), StoreError> {
        // Resumed: the schedule exists, disabled; a new one: create it.
        self.put(sch, ScheduleState::Enabled, sch.version > 1).await
    }

    async fn rearm(&self, _sch: &Recurring) -> Result<(), StoreError> {
        // EventBridge fires the next time by itself.
        Ok(())
    }

    async fn pause(&self, sch: &Recurring) -> Result<(), StoreError> {
        self.put(sch, ScheduleState::Disabled, true).await
    }

    async fn disarm(&self, sch: &Recurring) -> Result<(), StoreError> {
        delete_schedule(
            &self.client,
            &self.target.group,
            recurring_schedule_name(&sch.id),
        )
        .await
    }
}

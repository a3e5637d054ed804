//! The `Scheduler` port over EventBridge Scheduler: one one-time schedule per work item, in the
//! deployment's schedule group, whose target sends the item's queue message to its queue (jobs,
//! or batch finalization for a batch's expiry).
//! EventBridge deletes each schedule once it has fired (`ActionAfterCompletion: DELETE`).

use async_trait::async_trait;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use prism_core::clock::format_rfc3339;
use prism_core::ports::{Scheduler, WorkItem};
use prism_core::{StoreError, Timestamp};

use crate::attrs::unavailable;
use crate::queue::encode_work_item;

/// EventBridge keeps retrying a failed delivery this long (its maximum) before the DLQ.
const MAX_EVENT_AGE_SECONDS: i32 = 24 * 3600;
const MAX_RETRY_ATTEMPTS: i32 = 185;

/// Where schedules live and what they target; read from the environment the template sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleTarget {
    pub group: String,
    /// The jobs queue's ARN: where scheduled jobs are delivered.
    pub queue_arn: String,
    /// The batch finalize queue's ARN: where batch expiry is delivered.
    pub finalize_queue_arn: String,
    /// The role EventBridge Scheduler assumes to send to that queue (and nothing else).
    pub role_arn: String,
    /// Deliveries EventBridge gave up on land here (and raise an alarm); the reconciler still
    /// triggers their jobs.
    pub dead_letter_arn: String,
}

#[derive(Clone)]
pub struct EventBridgeScheduler {
    client: aws_sdk_scheduler::Client,
    target: ScheduleTarget,
}

/// One schedule per item, named by the item (unique, and within the 64-character limit).
pub fn schedule_name(item: &WorkItem) -> String {
    item.key()
}

/// `at(...)` takes whole seconds in the schedule's time zone, here UTC; rounding up to the minute
/// (EventBridge's own granularity) keeps the delivery from ever preceding the due time.
pub fn at_expression(at: Timestamp) -> String {
    const MINUTE_MS: i64 = 60_000;
    let rounded = Timestamp(
        at.0.div_euclid(MINUTE_MS) * MINUTE_MS
            + if at.0.rem_euclid(MINUTE_MS) == 0 {
                0
            } else {
                MINUTE_MS
            },
    );
    let text = format_rfc3339(rounded);
    format!("at({})", text.trim_end_matches('Z'))
}

impl EventBridgeScheduler {
    pub fn new(client: aws_sdk_scheduler::Client, target: ScheduleTarget) -> Self {
        Self { client, target }
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule(&self, item: &WorkItem, at: Timestamp) -> Result<(), StoreError> {
        let queue = match item {
            WorkItem::FinalizeBatch(_) => &self.target.finalize_queue_arn,
            // Webhook retries wait at most a queue delay, so they are never scheduled; were one
            // to be, any stage's consumer dispatches it by its item.
            WorkItem::Job(_)
            | WorkItem::PlanBatch(_)
            | WorkItem::RunChunk { .. }
            | WorkItem::PollNative { .. }
            | WorkItem::Webhook(_)
            | WorkItem::FireSchedule { .. } => &self.target.queue_arn,
        };
        let target = Target::builder()
            .arn(queue)
            .role_arn(&self.target.role_arn)
            .input(encode_work_item(item))
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
            .map_err(unavailable)?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(unavailable)?;
        let result = self
            .client
            .create_schedule()
            .name(schedule_name(item))
            .group_name(&self.target.group)
            .schedule_expression(at_expression(at))
            .schedule_expression_timezone("UTC")
            .flexible_time_window(window)
            .target(target)
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Created by an earlier attempt of this same call: the schedule is in place.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conflict_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    async fn unschedule(&self, item: &WorkItem) -> Result<(), StoreError> {
        // Already fired (and deleted by EventBridge) or never created: nothing to do.
        delete_schedule(&self.client, &self.target.group, schedule_name(item)).await
    }
}

/// Deletes the schedule `name` from `group`; one that is already gone counts as deleted.
pub(crate) async fn delete_schedule(
    client: &aws_sdk_scheduler::Client,
    group: &str,
    name: String,
) -> Result<(), StoreError> {
    let result = client
        .delete_schedule()
        .name(name)
        .group_name(group)
        .send()
        .await;
    match result {
        Ok(_) => Ok(()),
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            Ok(())
        }
        Err(err) => Err(unavailable(err)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_expressions_round_up_to_the_minute_in_utc() {
        let exact = prism_core::clock::parse_rfc3339("2026-04-05T09:00:00Z").unwrap();
        assert_eq!(at_expression(exact), "at(2026-04-05T09:00:00)");
        let later = prism_core::clock::parse_rfc3339("2026-04-05T11:00:00.001+02:00").unwrap();
        assert_eq!(at_expression(later), "at(2026-04-05T09:01:00)");
    }
}

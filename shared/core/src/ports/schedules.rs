//! Time: the one-shot scheduler, recurring schedules and the trigger that fires them.

use async_trait::async_trait;
use bytes::Bytes;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::{JobId, TenantId};
use crate::list::Page;
use crate::recurring::{Recurring, RecurringRef};

use super::jobs::{CreateOutcome, IdempotencyClaim};
use super::queue::WorkItem;

/// Delivers a work item to the work queue at a time further ahead than a queue delay reaches,
/// durably (EventBridge Scheduler on AWS). Identified by the item, so cancel needs nothing else.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Arranges one delivery of `item` at `at` or shortly after, never before.
    async fn schedule(&self, item: &WorkItem, at: Timestamp) -> Result<(), StoreError>;

    /// Drops the pending delivery of `item`; nothing to drop is not an error.
    async fn unschedule(&self, item: &WorkItem) -> Result<(), StoreError>;
}

/// Recurring schedules. Every change is a whole-state write conditional on the version read
/// (core's `recurring::decisions` decide it), so concurrent firings, pauses and deletes never
/// overwrite each other.
#[async_trait]
pub trait RecurringStore: Send + Sync {
    /// Writes a new schedule (version 1) with the request body its runs send. With a claim, the
    /// key is recorded in the same write (beside the job creates' keys, one namespace per
    /// tenant); a key that still holds leaves nothing written and answers `Replayed` with the
    /// id it names. Never `Created { triggered: true }`: a schedule is armed by its trigger.
    async fn create(
        &self,
        schedule: &Recurring,
        request: &Bytes,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError>;

    /// The tenant's schedule; `None` for another tenant's or an unknown one.
    async fn get(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Recurring>, StoreError>;

    /// The body each run sends.
    async fn request_body(&self, schedule: &RecurringRef) -> Result<Option<Bytes>, StoreError>;

    /// The tenant's schedules, newest first.
    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&JobId>,
    ) -> Result<Page<Recurring>, StoreError>;

    /// How many of the tenant's schedules are active or paused (the per-tenant cap).
    async fn count_live(&self, tenant: &TenantId) -> Result<usize, StoreError>;

    /// Replaces the schedule's state (status, next/last times, counters) with `next`'s and
    /// bumps its version, if the stored version is still `next.version`. False when another
    /// write came first.
    async fn update(&self, next: &Recurring) -> Result<bool, StoreError>;
}

/// Makes a recurring schedule fire: embedded, one delayed queue message for the next fire time
/// at a time; on AWS, one recurring EventBridge Scheduler schedule that fires by itself.
#[async_trait]
pub trait RecurringTrigger: Send + Sync {
    /// A new (or resumed) active schedule: arrange its firings from `next_run_at` on.
    async fn arm(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// A firing was handled and the schedule is still active: arrange the one after (a no-op
    /// where the trigger recurs by itself).
    async fn rearm(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// Paused: no firings until resumed (the definition is kept).
    async fn pause(&self, schedule: &Recurring) -> Result<(), StoreError>;

    /// Finished or cancelled: no more firings; nothing to remove is not an error.
    async fn disarm(&self, schedule: &Recurring) -> Result<(), StoreError>;
}

//! Recurring schedules in memory: the `RecurringStore` fake (versioned writes, as the adapters
//! make them) and a `RecurringTrigger` fake that records what it was asked to do.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::jobs::decisions::idempotency_key_holds;
use prism_core::list::Page;
use prism_core::ports::{CreateOutcome, IdempotencyClaim, RecurringStore, RecurringTrigger};
use prism_core::recurring::{Recurring, RecurringRef, RecurringStatus};
use prism_core::{JobId, StoreError, TenantId, Timestamp};

use super::lock;

/// (tenant, key) -> (schedule id, body hash, expires at).
type IdempotencyRecords = HashMap<(TenantId, String), (JobId, String, Timestamp)>;

#[derive(Default)]
pub struct MemoryRecurringStore {
    rows: Mutex<HashMap<JobId, (Recurring, Bytes)>>,
    keys: Mutex<IdempotencyRecords>,
}

impl MemoryRecurringStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl RecurringStore for MemoryRecurringStore {
    async fn create(
        &self,
        schedule: &Recurring,
        request: &Bytes,
        idempotency: Option<&IdempotencyClaim>,
    ) -> Result<CreateOutcome, StoreError> {
        if let Some(claim) = idempotency {
            let mut keys = lock(&self.keys);
            let slot = (schedule.tenant.clone(), claim.key.clone());
            if let Some((id, hash, expires_at)) = keys.get(&slot)
                && idempotency_key_holds(*expires_at, schedule.created_at)
            {
                return Ok(CreateOutcome::Replayed {
                    job_id: id.clone(),
                    same_body: *hash == claim.body_hash,
                });
            }
            keys.insert(
                slot,
                (
                    schedule.id.clone(),
                    claim.body_hash.clone(),
                    claim.expires_at,
                ),
            );
        }
        lock(&self.rows).insert(schedule.id.clone(), (schedule.clone(), request.clone()));
        Ok(CreateOutcome::Created { triggered: false })
    }

    async fn get(&self, tenant: &TenantId, id: &JobId) -> Result<Option<Recurring>, StoreError> {
        Ok(lock(&self.rows)
            .get(id)
            .filter(|(s, _)| &s.tenant == tenant)
            .map(|(s, _)| s.clone()))
    }

    async fn request_body(&self, schedule: &RecurringRef) -> Result<Option<Bytes>, StoreError> {
        Ok(lock(&self.rows).get(&schedule.id).map(|(_, b)| b.clone()))
    }

    async fn list(
        &self,
        tenant: &TenantId,
        limit: usize,
        after: Option<&JobId>,
    ) -> Result<Page<Recurring>, StoreError> {
        let mut items: Vec<Recurring> = lock(&self.rows)
            .values()
            .map(|(s, _)| s.clone())
            .filter(|s| &s.tenant == tenant && after.is_none_or(|a| &s.id < a))
            .collect();
        items.sort_by(|a, b| b.id.cmp(&a.id));
        let has_more = items.len() > limit;
        items.truncate(limit);
        Ok(Page { items, has_more })
    }

    async fn count_live(&self, tenant: &TenantId) -> Result<usize, StoreError> {
        Ok(lock(&self.rows)
            .values()
            .filter(|(s, _)| &s.tenant == tenant && !s.status.is_terminal())
            .count())
    }

    async fn update(&self, next: &Recurring) -> Result<bool, StoreError> {
        let mut rows = lock(&self.rows);
        let Some((stored, _)) = rows.get_mut(&next.id) else {
            return Ok(false);
        };
        if stored.version != next.version {
            return Ok(false);
        }
        *stored = Recurring {
            version: next.version + 1,
            ..next.clone()
        };
        Ok(true)
    }
}

/// What the trigger was asked, in order: `("arm" | "rearm" | "pause" | "disarm", status)`.
#[derive(Default)]
pub struct RecordingTrigger {
    pub calls: Mutex<Vec<(&'static str, RecurringStatus)>>,
}

#[async_trait]
impl RecurringTrigger for RecordingTrigger {
    async fn arm(&self, s: &Recurring) -> Result<(), StoreError> {
        lock(&self.calls).push(("arm", s.status));
        Ok(())
    }

    async fn rearm(&self, s: &Recurring) -> Result<(), StoreError> {
        lock(&self.calls).push(("rearm", s.status));
        Ok(())
    }

    async fn pause(&self, s: &Recurring) -> Result<(), StoreError> {
        lock(&self.calls).push(("pause", s.status));
        Ok(())
    }

    async fn disarm(&self, s: &Recurring) -> Result<(), StoreError> {
        lock(&self.calls).push(("disarm", s.status));
        Ok(())
    }
}

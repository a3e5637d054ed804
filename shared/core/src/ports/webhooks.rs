//! Webhooks: endpoints, the event outbox, deliveries and the sender.

use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::ids::TenantId;
use crate::webhooks::target::TargetError;
use crate::webhooks::{Attempt, DeliveryState, Endpoint, EventRef, WebhookEvent};

/// Webhook endpoints, the event outbox and the delivery record. Terminal transitions record
/// their event themselves (the job and batch stores, in the same write); this port records the
/// events that follow no state change (tests, redeliveries) and everything delivery keeps.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError>;

    /// The tenant's endpoint; `None` for another tenant's or an unknown one.
    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>, StoreError>;

    /// The tenant's endpoints, newest first.
    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError>;

    /// Replaces the endpoint's mutable fields (secrets, status, failing streak); false when it
    /// is gone.
    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError>;

    /// False when there was none.
    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError>;

    /// Records an event and triggers its delivery in one write (an event that follows no state
    /// change: a test, a redelivery). Recording an id twice keeps the first.
    async fn record_event(&self, event: &WebhookEvent) -> Result<(), StoreError>;

    async fn event(&self, event: &EventRef) -> Result<Option<WebhookEvent>, StoreError>;

    /// Where the event stands with each endpoint it was tried on.
    async fn delivery_states(&self, event: &EventRef) -> Result<Vec<DeliveryState>, StoreError>;

    /// Records one attempt (if any: a redelivery only resets the state) and the delivery state
    /// it led to, in one write.
    async fn record_attempt(
        &self,
        tenant: &TenantId,
        attempt: Option<&Attempt>,
        state: &DeliveryState,
    ) -> Result<(), StoreError>;

    /// The endpoint's attempts, newest first.
    async fn attempts(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// Events recorded but whose delivery is not settled and not known to be waiting on a
    /// trigger, due before `before`: the reconciler re-triggers them. Stores whose outbox write
    /// also queues the trigger (SQLite) return none.
    async fn undelivered(
        &self,
        before: Timestamp,
        limit: usize,
    ) -> Result<Vec<EventRef>, StoreError>;

    /// Marks the event settled (every endpoint delivered or given up), so the reconciler stops
    /// looking at it.
    async fn settle_event(&self, event: &EventRef) -> Result<(), StoreError>;
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResult {
    /// The receiver's status; `None` when no answer came.
    pub status: Option<u16>,
    /// From starting the attempt to the answer's first byte (or the failure).
    pub latency: Duration,
    /// Why no answer came, for the delivery list (never a secret).
    pub error: Option<String>,
    /// The answer's `Retry-After` header as sent (core's `webhooks::decisions` reads it).
    pub retry_after: Option<String>,
}

/// Sends one signed webhook request: resolves the host, refuses a forbidden address
/// ([`crate::webhooks::target`]), connects to the address it checked (no second resolution),
/// never follows a redirect, and gives up after the attempt timeout.
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// Resolves the URL's host and checks it and every address it resolves to (endpoint
    /// creation).
    async fn check_target(&self, url: &str, allow_private: bool) -> Result<(), TargetError>;

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        allow_private: bool,
    ) -> SendResult;
}

//! In-memory `WebhookStore` and a `WebhookSender` that records what it would send and answers
//! from a script (200 once it is used up).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use prism_core::ports::{SendResult, WebhookSender, WebhookStore};
use prism_core::webhooks::target::{TargetError, parse_target};
use prism_core::webhooks::{Attempt, DeliveryState, Endpoint, EventRef, WebhookEvent};
use prism_core::{StoreError, TenantId, Timestamp};

use super::lock;

#[derive(Default)]
pub struct MemoryWebhookStore {
    endpoints: Mutex<Vec<Endpoint>>,
    events: Mutex<Vec<WebhookEvent>>,
    states: Mutex<Vec<DeliveryState>>,
    attempts: Mutex<Vec<(TenantId, Attempt)>>,
}

impl MemoryWebhookStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl WebhookStore for MemoryWebhookStore {
    async fn create_endpoint(&self, endpoint: &Endpoint) -> Result<(), StoreError> {
        lock(&self.endpoints).push(endpoint.clone());
        Ok(())
    }

    async fn endpoint(&self, tenant: &TenantId, id: &str) -> Result<Option<Endpoint>, StoreError> {
        Ok(lock(&self.endpoints)
            .iter()
            .find(|e| e.tenant == *tenant && e.id == id)
            .cloned())
    }

    async fn endpoints(&self, tenant: &TenantId) -> Result<Vec<Endpoint>, StoreError> {
        Ok(lock(&self.endpoints)
            .iter()
            .rev()
            .filter(|e| e.tenant == *tenant)
            .cloned()
            .collect())
    }

    async fn update_endpoint(&self, endpoint: &Endpoint) -> Result<bool, StoreError> {
        let mut all = lock(&self.endpoints);
        match all
            .iter_mut()
            .find(|e| e.tenant == endpoint.tenant && e.id == endpoint.id)
        {
            Some(e) => {
                *e = endpoint.clone();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn delete_endpoint(&self, tenant: &TenantId, id: &str) -> Result<bool, StoreError> {
        let mut all = lock(&self.endpoints);
        let before = all.len();
        all.retain(|e| !(e.tenant == *tenant && e.id == id));
        Ok(all.len() < before)
    }

    async fn record_event(&self, event: &WebhookEvent) -> Result<(), StoreError> {
        let mut events = lock(&self.events);
        if !events.iter().any(|e| e.id == event.id) {
            events.push(event.clone());
        }
        Ok(())
    }

    async fn event(&self, event: &EventRef) -> Result<Option<WebhookEvent>, StoreError> {
        Ok(lock(&self.events)
            .iter()
            .find(|e| e.tenant == event.tenant && e.id == event.id)
            .cloned())
    }

    async fn delivery_states(&self, event: &EventRef) -> Result<Vec<DeliveryState>, StoreError> {
        Ok(lock(&self.states)
            .iter()
            .filter(|s| s.event_id == event.id)
            .cloned()
            .collect())
    }

    async fn record_attempt(
        &self,
        tenant: &TenantId,
        attempt: Option<&Attempt>,
        state: &DeliveryState,
    ) -> Result<(), StoreError> {
        if let Some(a) = attempt {
            lock(&self.attempts).push((tenant.clone(), a.clone()));
        }
        let mut states = lock(&self.states);
        states.retain(|s| !(s.event_id == state.event_id && s.endpoint_id == state.endpoint_id));
        states.push(state.clone());
        Ok(())
    }

    async fn attempts(
        &self,
        tenant: &TenantId,
        endpoint_id: &str,
        limit: usize,
    ) -> Result<Vec<Attempt>, StoreError> {
        Ok(lock(&self.attempts)
            .iter()
            .rev()
            .filter(|(t, a)| t == tenant && a.endpoint_id == endpoint_id)
            .take(limit)
            .map(|(_, a)| a.clone())
            .collect())
    }

    async fn undelivered(
        &self,
        _before: Timestamp,
        _limit: usize,
    ) -> Result<Vec<EventRef>, StoreError> {
        Ok(Vec::new())
    }

    async fn settle_event(&self, _event: &EventRef) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The headers of one attempt.
pub type Headers = Vec<(&'static str, String)>;

/// Records each attempt's URL and headers; answers the scripted statuses in turn.
#[derive(Default)]
pub struct ScriptedSender {
    pub sent: Mutex<Vec<(String, Headers)>>,
    pub script: Mutex<VecDeque<Option<u16>>>,
}

#[async_trait]
impl WebhookSender for ScriptedSender {
    async fn check_target(&self, url: &str, allow_private: bool) -> Result<(), TargetError> {
        parse_target(url, allow_private).map(|_| ())
    }

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        _body: &str,
        _allow_private: bool,
    ) -> SendResult {
        lock(&self.sent).push((url.to_owned(), headers.to_vec()));
        // A real send waits on the network: let a concurrent delivery run meanwhile.
        tokio::task::yield_now().await;
        let status = lock(&self.script).pop_front().unwrap_or(Some(200));
        SendResult {
            status,
            latency: Duration::from_millis(1),
            error: None,
            retry_after: None,
        }
    }
}

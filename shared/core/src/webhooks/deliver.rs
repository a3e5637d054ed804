//! The webhooks stage: one delivery run of one event. Every endpoint that receives the event and
//! whose attempt is due is sent it once (same `webhook-id` every time), each attempt is recorded
//! with the state [`decisions::after_attempt`] gives, the endpoint's health is updated, and the
//! event is triggered again for the earliest attempt still due (a fresh message, so the queue's
//! receive limit never counts retries).

use std::time::Duration;

use rand::Rng;

use super::{Attempt, DeliveryOutcome, DeliveryState, EventRef, WebhookEvent, decisions, signing};
use crate::deps::{Deps, MAX_QUEUE_DELAY};
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::ports::WorkItem;

/// Runs the due attempts of one event. Acknowledged once the next trigger is queued (or none is
/// needed); a storage failure leaves the message to reappear.
#[tracing::instrument(skip_all, fields(event_id = %event.id, tenant = %event.tenant))]
pub async fn deliver_event(deps: &Deps, event: &EventRef) -> Result<QueueAction, StoreError> {
    let Some(event) = deps.webhooks.event(event).await? else {
        return Ok(QueueAction::Ack);
    };
    let endpoints = deps.webhooks.endpoints(&event.tenant).await?;
    let known = deps.webhooks.delivery_states(&event.event_ref()).await?;
    let now = deps.clock.now();
    let mut states = Vec::new();
    for endpoint in endpoints.iter().filter(|e| decisions::receives(e, &event)) {
        let state = known
            .iter()
            .find(|s| s.endpoint_id == endpoint.id)
            .cloned()
            .unwrap_or_else(|| DeliveryState::new(&event.id, &endpoint.id, now));
        let due =
            state.outcome == DeliveryOutcome::Pending && state.next_at.is_none_or(|t| t <= now);
        if !due {
            states.push(state);
            continue;
        }
        let state = attempt(deps, &event, endpoint, &state).await?;
        states.push(state);
    }
    match decisions::next_due(&states) {
        None => {
            deps.webhooks.settle_event(&event.event_ref()).await?;
            Ok(QueueAction::Ack)
        }
        Some(due) => {
            let wait = deps.clock.now().until(due).min(MAX_QUEUE_DELAY);
            deps.queue
                .enqueue(&WorkItem::Webhook(event.event_ref()), wait)
                .await?;
            Ok(QueueAction::Ack)
        }
    }
}

/// One attempt to one endpoint: sign with every live secret, send, record.
async fn attempt(
    deps: &Deps,
    event: &WebhookEvent,
    endpoint: &super::Endpoint,
    state: &DeliveryState,
) -> Result<DeliveryState, StoreError> {
    let started = deps.clock.now();
    let body = event.payload();
    let secrets = decisions::signing_secrets(endpoint, started);
    let headers = signing::headers(&secrets, &event.id, started.unix_seconds(), &body);
    let sent = deps
        .webhook_sender
        .send(
            &endpoint.url,
            &headers,
            &body,
            deps.webhook_policy.allow_private_targets,
        )
        .await;
    let now = deps.clock.now();
    let jitter: f64 = rand::rng().random();
    let retry_after = sent
        .retry_after
        .as_deref()
        .and_then(|value| decisions::parse_retry_after(value, now));
    let next = decisions::after_attempt(
        state,
        sent.status,
        retry_after,
        now,
        deps.webhook_policy.retry_base,
        jitter,
    );
    let delivered = decisions::is_delivered(sent.status);
    crate::telemetry::count_webhook_delivery(delivered);
    tracing::info!(
        endpoint_id = %endpoint.id,
        attempt = next.attempts,
        status = sent.status,
        delivered,
        "webhook attempt"
    );
    let record = Attempt {
        id: deps.ids.prefixed("wda_", now),
        endpoint_id: endpoint.id.clone(),
        event_id: event.id.clone(),
        event_type: event.kind,
        attempt: next.attempts,
        status_code: sent.status,
        latency_ms: u64::try_from(sent.latency.as_millis()).unwrap_or(u64::MAX),
        error: sent.error,
        succeeded: delivered,
        created_at: now,
    };
    deps.webhooks
        .record_attempt(&event.tenant, Some(&record), &next)
        .await?;
    if let Some(changed) = decisions::endpoint_after_attempt(endpoint, sent.status, now) {
        deps.webhooks.update_endpoint(&changed).await?;
    }
    Ok(next)
}

/// The dead-letter path of a webhook message: delivery is idempotent per attempt record, so
/// the event is sent back to its queue to be tried again.
pub async fn dead_letter_event(deps: &Deps, event: &EventRef) -> Result<QueueAction, StoreError> {
    deps.queue
        .enqueue(&WorkItem::Webhook(event.clone()), Duration::ZERO)
        .await
        .map(|()| QueueAction::Ack)
}

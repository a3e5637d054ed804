//! Webhook delivery over the in-memory ports: retries keep the webhook-id and settle on a 2xx;
//! an endpoint of another kind or tenant gets nothing; two deliveries of one event at once (a
//! redelivered message) send the same webhook-id and settle it.

use std::time::Duration;

use prism_core::ports::WebhookStore;
use prism_core::webhooks::deliver::deliver_event;
use prism_core::webhooks::{Endpoint, EndpointStatus, EventKind, Secret, WebhookEvent};

use crate::support::*;

fn endpoint(tenant: &str, id: &str, events: Vec<EventKind>) -> Endpoint {
    Endpoint {
        id: id.into(),
        tenant: TenantId::parse(tenant).unwrap(),
        url: "https://hooks.example.com/x".into(),
        events,
        description: None,
        status: EndpointStatus::Enabled,
        created_at: START,
        secrets: vec![Secret {
            value: "whsec_YWJj".into(),
            expires_at: None,
        }],
        failing_since: None,
        disabled_at: None,
    }
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_are_retried_with_the_same_id_until_a_2xx_settles_the_event() {
    let world = World::new();
    let acme = TenantId::parse("acme").unwrap();
    for e in [
        endpoint("acme", "we_a", vec![]),
        endpoint("acme", "we_batches", vec![EventKind::BatchCompleted]),
        endpoint("other", "we_o", vec![]),
    ] {
        world.webhooks.create_endpoint(&e).await.unwrap();
    }
    world
        .sender
        .script
        .lock()
        .unwrap()
        .extend([Some(500), None, Some(302), Some(204)]);
    let event = WebhookEvent::for_subject(&acme, EventKind::AsyncJobFailed, "job_x", START);
    world.webhooks.record_event(&event).await.unwrap();
    for _ in 0..4 {
        let action = deliver_event(&world.deps, &event.event_ref())
            .await
            .unwrap();
        assert_eq!(action, QueueAction::Ack);
        world.clock.advance(Duration::from_secs(3600));
    }
    let sent = world.sender.sent.lock().unwrap().clone();
    assert_eq!(sent.len(), 4, "three failures, then the 2xx; nothing after");
    for (_, headers) in &sent {
        assert_eq!(headers[0], ("webhook-id", "evt_job_x".to_owned()));
    }
    let attempts = world.webhooks.attempts(&acme, "we_a", 10).await.unwrap();
    assert_eq!(attempts.len(), 4);
    assert!(attempts[0].succeeded);
    assert!(
        world
            .webhooks
            .attempts(&acme, "we_batches", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(start_paused = true)]
async fn two_concurrent_deliveries_of_one_event_send_the_same_id_and_settle_it_once() {
    let world = World::new();
    let acme = TenantId::parse("acme").unwrap();
    world
        .webhooks
        .create_endpoint(&endpoint("acme", "we_a", vec![]))
        .await
        .unwrap();
    let event = WebhookEvent::for_subject(&acme, EventKind::BatchCompleted, "batch_x", START);
    world.webhooks.record_event(&event).await.unwrap();
    let message = event.event_ref();
    let (first, second) = tokio::join!(
        deliver_event(&world.deps, &message),
        deliver_event(&world.deps, &message),
    );
    assert_eq!(first.unwrap(), QueueAction::Ack);
    assert_eq!(second.unwrap(), QueueAction::Ack);
    let sent = world.sender.sent.lock().unwrap().clone();
    assert_eq!(
        sent.len(),
        2,
        "both ran their attempt before either recorded it"
    );
    for (_, headers) in &sent {
        assert_eq!(headers[0], ("webhook-id", "evt_batch_x".to_owned()));
    }
    let states = world
        .webhooks
        .delivery_states(&event.event_ref())
        .await
        .unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(
        states[0].outcome,
        prism_core::webhooks::DeliveryOutcome::Delivered
    );
    // Settled: a third delivery of the message sends nothing.
    world.clock.advance(Duration::from_secs(3600));
    deliver_event(&world.deps, &event.event_ref())
        .await
        .unwrap();
    assert_eq!(world.sender.sent.lock().unwrap().len(), 2);
}

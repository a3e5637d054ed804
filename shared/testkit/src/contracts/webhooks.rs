//! The `WebhookStore` contract: endpoints per tenant with every field kept, newest first,
//! updated and deleted once; an event recorded once (the first write kept); attempts listed
//! newest first per endpoint with the delivery state written beside them; a settled event out
//! of the reconciler's sight. Its own fixture ([`WebhookPorts`]) and macro
//! (`webhook_contract!`).

use prism_core::ports::WebhookStore;
use prism_core::webhooks::{
    Attempt, DeliveryOutcome, DeliveryState, Endpoint, EndpointStatus, EventKind, Secret,
    WebhookEvent,
};

use super::*;

pub struct WebhookPorts {
    pub webhooks: Arc<dyn WebhookStore>,
    pub clock: Arc<dyn TestClock>,
}

fn new_endpoint(ids: &IdGenerator, owner: &str, now: Timestamp) -> Endpoint {
    Endpoint {
        id: ids.prefixed("we_", now),
        tenant: tenant(owner),
        url: "https://hooks.example.com/prism".into(),
        events: vec![EventKind::BatchCompleted, EventKind::AsyncJobFailed],
        description: Some("contract".into()),
        status: EndpointStatus::Enabled,
        created_at: now,
        secrets: vec![Secret {
            value: "whsec_Y29udHJhY3Q=".into(),
            expires_at: None,
        }],
        failing_since: None,
        disabled_at: None,
    }
}

fn attempt(
    ids: &IdGenerator,
    event: &WebhookEvent,
    endpoint: &str,
    n: u32,
    at: Timestamp,
) -> Attempt {
    Attempt {
        id: ids.prefixed("wda_", at),
        endpoint_id: endpoint.to_owned(),
        event_id: event.id.clone(),
        event_type: event.kind,
        attempt: n,
        status_code: if n == 1 { Some(503) } else { Some(204) },
        latency_ms: 12,
        error: None,
        succeeded: n > 1,
        created_at: at,
    }
}

pub async fn endpoints_belong_to_their_tenant_and_change_only_while_they_exist(p: WebhookPorts) {
    let ids = IdGenerator::new();
    let older = new_endpoint(&ids, "alpha", p.clock.now());
    let newer = new_endpoint(&ids, "alpha", p.clock.now().plus(Duration::from_secs(1)));
    let other = new_endpoint(&ids, "beta", p.clock.now());
    for e in [&older, &newer, &other] {
        p.webhooks.create_endpoint(e).await.unwrap();
    }
    let alpha = tenant("alpha");
    assert_eq!(
        p.webhooks.endpoint(&alpha, &older.id).await.unwrap(),
        Some(older.clone())
    );
    assert_eq!(
        p.webhooks
            .endpoint(&tenant("beta"), &older.id)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        p.webhooks.endpoints(&alpha).await.unwrap(),
        vec![newer.clone(), older.clone()],
        "newest first, the tenant's own"
    );
    let now = p.clock.now();
    let changed = Endpoint {
        status: EndpointStatus::Disabled,
        disabled_at: Some(now),
        failing_since: Some(now.minus(HOUR)),
        secrets: vec![
            Secret {
                value: "whsec_bmV3".into(),
                expires_at: None,
            },
            Secret {
                value: "whsec_Y29udHJhY3Q=".into(),
                expires_at: Some(now.plus(HOUR)),
            },
        ],
        ..older.clone()
    };
    assert!(p.webhooks.update_endpoint(&changed).await.unwrap());
    assert_eq!(
        p.webhooks.endpoint(&alpha, &older.id).await.unwrap(),
        Some(changed.clone())
    );
    assert!(
        !p.webhooks
            .delete_endpoint(&tenant("beta"), &older.id)
            .await
            .unwrap(),
        "another tenant's endpoint is not deleted"
    );
    assert!(p.webhooks.delete_endpoint(&alpha, &older.id).await.unwrap());
    assert!(!p.webhooks.delete_endpoint(&alpha, &older.id).await.unwrap());
    assert_eq!(p.webhooks.endpoint(&alpha, &older.id).await.unwrap(), None);
    assert!(
        !p.webhooks.update_endpoint(&changed).await.unwrap(),
        "a deleted endpoint is not written back"
    );
    assert_eq!(p.webhooks.endpoints(&alpha).await.unwrap(), vec![newer]);
}

pub async fn an_event_is_recorded_once_and_its_attempts_list_newest_first(p: WebhookPorts) {
    let ids = IdGenerator::new();
    let now = p.clock.now();
    let alpha = tenant("alpha");
    let event = WebhookEvent::for_subject(&alpha, EventKind::BatchCompleted, "batch_c1", now);
    p.webhooks.record_event(&event).await.unwrap();
    let again = WebhookEvent {
        created_at: now.plus(HOUR),
        ..event.clone()
    };
    p.webhooks.record_event(&again).await.unwrap();
    assert_eq!(
        p.webhooks.event(&event.event_ref()).await.unwrap(),
        Some(event.clone()),
        "recording an id twice keeps the first"
    );
    let elsewhere = prism_core::webhooks::EventRef {
        tenant: tenant("beta"),
        id: event.id.clone(),
    };
    assert_eq!(p.webhooks.event(&elsewhere).await.unwrap(), None);
    assert!(
        p.webhooks
            .delivery_states(&event.event_ref())
            .await
            .unwrap()
            .is_empty()
    );

    let endpoint = "we_contract";
    let first = attempt(&ids, &event, endpoint, 1, now);
    let retrying = DeliveryState {
        attempts: 1,
        first_attempt_at: Some(now),
        next_at: Some(now.plus(Duration::from_secs(5))),
        ..DeliveryState::new(&event.id, endpoint, now)
    };
    p.webhooks
        .record_attempt(&alpha, Some(&first), &retrying)
        .await
        .unwrap();
    let second = attempt(&ids, &event, endpoint, 2, now.plus(Duration::from_secs(5)));
    let delivered = DeliveryState {
        attempts: 2,
        next_at: None,
        outcome: DeliveryOutcome::Delivered,
        ..retrying.clone()
    };
    p.webhooks
        .record_attempt(&alpha, Some(&second), &delivered)
        .await
        .unwrap();
    assert_eq!(
        p.webhooks
            .delivery_states(&event.event_ref())
            .await
            .unwrap(),
        vec![delivered.clone()],
        "one state per endpoint, the latest written"
    );
    assert_eq!(
        p.webhooks.attempts(&alpha, endpoint, 10).await.unwrap(),
        vec![second.clone(), first.clone()]
    );
    assert_eq!(
        p.webhooks.attempts(&alpha, endpoint, 1).await.unwrap(),
        vec![second.clone()]
    );
    assert!(
        p.webhooks
            .attempts(&tenant("beta"), endpoint, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A redelivery resets the state without an attempt.
    let reset = DeliveryState::new(&event.id, endpoint, now.plus(HOUR));
    p.webhooks
        .record_attempt(&alpha, None, &reset)
        .await
        .unwrap();
    assert_eq!(
        p.webhooks
            .delivery_states(&event.event_ref())
            .await
            .unwrap(),
        vec![reset]
    );
    assert_eq!(
        p.webhooks
            .attempts(&alpha, endpoint, 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

pub async fn a_settled_event_is_not_reconciled(p: WebhookPorts) {
    let now = p.clock.now();
    let event =
        WebhookEvent::for_subject(&tenant("alpha"), EventKind::AsyncJobFailed, "job_r1", now);
    p.webhooks.record_event(&event).await.unwrap();
    p.webhooks.settle_event(&event.event_ref()).await.unwrap();
    let far = now.plus(HOUR * 24 * 30);
    assert!(
        !p.webhooks
            .undelivered(far, 100)
            .await
            .unwrap()
            .contains(&event.event_ref())
    );
}

/// Expands to one `#[tokio::test]` per `WebhookStore` case.
#[macro_export]
macro_rules! webhook_contract {
    ($fresh:path) => {
        $crate::webhook_contract!(@cases $fresh;
            endpoints_belong_to_their_tenant_and_change_only_while_they_exist,
            an_event_is_recorded_once_and_its_attempts_list_newest_first,
            a_settled_event_is_not_reconciled,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contracts::$case($fresh().await).await;
            }
        )*
    };
}

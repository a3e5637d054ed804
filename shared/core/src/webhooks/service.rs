//! The services behind `/v1/webhook_endpoints`: create (checking the target), list, get,
//! delete, rotate the secret (the old one signs for 24 h more), send a test event, list
//! delivery attempts, and redeliver an event. Another tenant's endpoint is not found.

use serde::Deserialize;

use super::{
    Attempt, DeliveryState, Endpoint, EndpointStatus, EventKind, Secret, WebhookEvent, decisions,
    signing,
};
use crate::clock::Timestamp;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::TenantId;
use crate::ports::{WebhookSender, WebhookStore};
use crate::webhooks::target::{TargetError, parse_target};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    #[serde(default)]
    events: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
}

const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 512;
pub const MAX_ENDPOINTS_PER_TENANT: usize = 16;
pub const DEFAULT_ATTEMPTS_LIMIT: usize = 20;
pub const MAX_ATTEMPTS_LIMIT: usize = 100;

fn not_found(id: &str) -> ServiceError {
    ServiceError::NotFound {
        what: "webhook endpoint",
        id: id.to_owned(),
    }
}

fn invalid_target(error: TargetError) -> ServiceError {
    ServiceError::invalid(error.to_string(), Some("url"), Some("invalid_url"))
}

/// Checks the target (form and every resolved address) and stores a new endpoint; the answer
/// is the only time its secret is shown.
pub async fn create_endpoint(
    deps: &Deps,
    tenant: &TenantId,
    body: &[u8],
) -> Result<Endpoint, ServiceError> {
    let now = deps.clock.now();
    let id = deps.ids.prefixed("we_", now);
    create_endpoint_in(
        deps.webhooks.as_ref(),
        deps.webhook_sender.as_ref(),
        deps.webhook_policy.allow_private_targets,
        NewEndpoint { id, tenant, now },
        body,
    )
    .await
}

/// What names a new endpoint: its id, owner and creation time.
pub struct NewEndpoint<'a> {
    pub id: String,
    pub tenant: &'a TenantId,
    pub now: Timestamp,
}

/// [`create_endpoint`] over the two ports it needs, for the operator command as well.
pub async fn create_endpoint_in(
    store: &dyn WebhookStore,
    sender: &dyn WebhookSender,
    allow_private: bool,
    new: NewEndpoint<'_>,
    body: &[u8],
) -> Result<Endpoint, ServiceError> {
    let NewEndpoint { id, tenant, now } = new;
    let request: CreateEndpoint = serde_json::from_slice(body)
        .map_err(|e| ServiceError::invalid(format!("invalid request body: {e}"), None, None))?;
    if request.url.len() > MAX_URL_LEN {
        return Err(invalid_target(TargetError::InvalidUrl));
    }
    parse_target(&request.url, allow_private).map_err(invalid_target)?;
    if request
        .description
        .as_ref()
        .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
    {
        return Err(ServiceError::invalid(
            "description is too long",
            Some("description"),
            None,
        ));
    }
    let events = request
        .events
        .unwrap_or_default()
        .iter()
        .map(|name| {
            EventKind::parse(name)
                .filter(|k| *k != EventKind::EndpointTest)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        format!("unknown event type '{name}'"),
                        Some("events"),
                        None,
                    )
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if store.endpoints(tenant).await?.len() >= MAX_ENDPOINTS_PER_TENANT {
        return Err(ServiceError::RateLimited {
            message: format!("at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints per tenant"),
        });
    }
    sender
        .check_target(&request.url, allow_private)
        .await
        .map_err(invalid_target)?;
    let endpoint = Endpoint {
        id,
        tenant: tenant.clone(),
        url: request.url,
        events,
        description: request.description,
        status: EndpointStatus::Enabled,
        created_at: now,
        secrets: vec![Secret {
            value: signing::new_secret(),
            expires_at: None,
        }],
        failing_since: None,
        disabled_at: None,
    };
    store.create_endpoint(&endpoint).await?;
    Ok(endpoint)
}

pub async fn get_endpoint(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Endpoint, ServiceError> {
    deps.webhooks
        .endpoint(tenant, id)
        .await?
        .ok_or_else(|| not_found(id))
}

pub async fn list_endpoints(deps: &Deps, tenant: &TenantId) -> Result<Vec<Endpoint>, ServiceError> {
    Ok(deps.webhooks.endpoints(tenant).await?)
}

pub async fn delete_endpoint(deps: &Deps, tenant: &TenantId, id: &str) -> Result<(), ServiceError> {
    if deps.webhooks.delete_endpoint(tenant, id).await? {
        Ok(())
    } else {
        Err(not_found(id))
    }
}

/// A new secret signs from now on; the previous one keeps signing beside it for 24 h, so
/// receivers can switch without missing an event. Older ones are dropped.
pub async fn rotate_secret(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<Endpoint, ServiceError> {
    let mut endpoint = get_endpoint(deps, tenant, id).await?;
    let now = deps.clock.now();
    let previous = endpoint
        .secrets
        .iter()
        .find(|s| s.expires_at.is_none())
        .map(|s| Secret {
            value: s.value.clone(),
            expires_at: Some(now.plus(decisions::ROTATION_OVERLAP)),
        });
    endpoint.secrets = std::iter::once(Secret {
        value: signing::new_secret(),
        expires_at: None,
    })
    .chain(previous)
    .collect();
    if !deps.webhooks.update_endpoint(&endpoint).await? {
        return Err(not_found(id));
    }
    Ok(endpoint)
}

/// Sends a `webhook_endpoint.test` event to this endpoint only, through the same queue and
/// retries as every other event.
pub async fn send_test(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
) -> Result<WebhookEvent, ServiceError> {
    let endpoint = get_endpoint(deps, tenant, id).await?;
    let now = deps.clock.now();
    let event = WebhookEvent {
        id: deps.ids.prefixed("evt_", now),
        tenant: tenant.clone(),
        kind: EventKind::EndpointTest,
        subject: endpoint.id.clone(),
        created_at: now,
        endpoint: Some(endpoint.id),
    };
    deps.webhooks.record_event(&event).await?;
    Ok(event)
}

pub async fn list_attempts(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    limit: Option<&str>,
) -> Result<Vec<Attempt>, ServiceError> {
    let limit = match limit {
        None => DEFAULT_ATTEMPTS_LIMIT,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_ATTEMPTS_LIMIT).contains(n))
            .ok_or_else(|| {
                ServiceError::invalid(
                    format!("limit must be an integer from 1 to {MAX_ATTEMPTS_LIMIT}"),
                    Some("limit"),
                    None,
                )
            })?,
    };
    get_endpoint(deps, tenant, id).await?;
    Ok(deps.webhooks.attempts(tenant, id, limit).await?)
}

/// Sends an event to this endpoint again, with the same `webhook-id`, whatever came of its
/// earlier attempts; the retry window starts over.
pub async fn redeliver(
    deps: &Deps,
    tenant: &TenantId,
    id: &str,
    event_id: &str,
) -> Result<WebhookEvent, ServiceError> {
    let endpoint = get_endpoint(deps, tenant, id).await?;
    let event = deps
        .webhooks
        .event(&super::EventRef {
            tenant: tenant.clone(),
            id: event_id.to_owned(),
        })
        .await?
        .filter(|e| e.endpoint.as_ref().is_none_or(|only| *only == endpoint.id))
        .ok_or_else(|| ServiceError::NotFound {
            what: "event",
            id: event_id.to_owned(),
        })?;
    let state = DeliveryState::new(&event.id, &endpoint.id, deps.clock.now());
    deps.webhooks.record_attempt(tenant, None, &state).await?;
    deps.queue
        .enqueue(
            &crate::ports::WorkItem::Webhook(event.event_ref()),
            std::time::Duration::ZERO,
        )
        .await?;
    Ok(event)
}

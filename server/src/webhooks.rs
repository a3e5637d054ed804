//! `prism webhooks`: create, list and delete a tenant's webhook endpoints in the chosen store,
//! through the same checks as `POST /v1/webhook_endpoints`.

use std::sync::Arc;
use std::time::Duration;

use prism_aws::{AwsBackend, AwsSettings};
use prism_core::ids::IdGenerator;
use prism_core::ports::WebhookStore;
use prism_core::webhooks::Endpoint;
use prism_core::webhooks::service::{NewEndpoint, create_endpoint_in};
use prism_core::{Clock, ServiceError, SystemClock, TenantId};
use prism_embedded::{DATABASE_FILE, Database, SqliteWebhookStore};
use prism_upstream::HttpWebhookSender;

use crate::cli::{Backend, StoreArgs};
use crate::keys::KeysError;

#[derive(Debug, thiserror::Error)]
pub enum WebhooksError {
    #[error(transparent)]
    Store(#[from] KeysError),
    #[error("{0}")]
    Refused(#[from] ServiceError),
    #[error("no webhook endpoint '{0}' for this tenant")]
    Unknown(String),
}

fn tenant(name: &str) -> Result<TenantId, WebhooksError> {
    TenantId::parse(name).ok_or_else(|| KeysError::InvalidTenant(name.to_owned()).into())
}

/// The webhook store of the chosen backend.
pub async fn open_webhook_store(store: &StoreArgs) -> Result<Arc<dyn WebhookStore>, WebhooksError> {
    match store.backend {
        Backend::Embedded => {
            let data_dir = &store.data.data_dir;
            std::fs::create_dir_all(data_dir)
                .map_err(|e| KeysError::DataDir(data_dir.display().to_string(), e))?;
            let db = Database::open(&data_dir.join(DATABASE_FILE)).map_err(KeysError::from)?;
            Ok(Arc::new(SqliteWebhookStore::new(
                db,
                Arc::new(tokio::sync::Notify::new()),
            )))
        }
        Backend::Aws => {
            let settings =
                AwsSettings::from_lookup(|k| std::env::var(k).ok()).map_err(KeysError::from)?;
            let backend = AwsBackend::connect(settings, Duration::ZERO).await;
            Ok(Arc::new(backend.webhooks))
        }
    }
}

/// Creates an endpoint; the answer carries its secret, shown only now.
pub async fn create_endpoint(
    store: &dyn WebhookStore,
    tenant_name: &str,
    url: &str,
    events: &[String],
    allow_private: bool,
) -> Result<Endpoint, WebhooksError> {
    let tenant = tenant(tenant_name)?;
    let now = SystemClock.now();
    let body = serde_json::json!({"url": url, "events": events}).to_string();
    let new = NewEndpoint {
        id: IdGenerator::new().prefixed("we_", now),
        tenant: &tenant,
        now,
    };
    Ok(create_endpoint_in(
        store,
        &HttpWebhookSender::new(),
        allow_private,
        new,
        body.as_bytes(),
    )
    .await?)
}

pub async fn list_endpoints(
    store: &dyn WebhookStore,
    tenant_name: &str,
) -> Result<Vec<Endpoint>, WebhooksError> {
    let tenant = tenant(tenant_name)?;
    Ok(store.endpoints(&tenant).await.map_err(KeysError::from)?)
}

pub async fn delete_endpoint(
    store: &dyn WebhookStore,
    tenant_name: &str,
    id: &str,
) -> Result<(), WebhooksError> {
    let tenant = tenant(tenant_name)?;
    if store
        .delete_endpoint(&tenant, id)
        .await
        .map_err(KeysError::from)?
    {
        Ok(())
    } else {
        Err(WebhooksError::Unknown(id.to_owned()))
    }
}

//! Bearer-key authentication: the key is hashed, looked up by hash, re-checked in constant time,
//! and resolved to the tenant every object access is scoped by.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prism_core::TenantId;
use prism_core::keys::{ApiKeyRecord, hash_key, key_matches};
use prism_core::ports::KeyStore;

use crate::error::ApiError;
use crate::routes::AppState;

/// Recently verified keys, so a hot client costs no store read per request. A revoked key stops
/// working within `ttl`.
#[derive(Clone)]
pub struct KeyCache {
    store: Arc<dyn KeyStore>,
    ttl: Duration,
    entries: Arc<Mutex<HashMap<String, (ApiKeyRecord, Instant)>>>,
}

const MAX_CACHED_KEYS: usize = 10_000;

/// How long a verified key is trusted before the store is asked again.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(5);

impl KeyCache {
    pub fn new(store: Arc<dyn KeyStore>, ttl: Duration) -> Self {
        Self {
            store,
            ttl,
            entries: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    async fn tenant_for(&self, secret: &str) -> Result<Option<TenantId>, ApiError> {
        let hash = hash_key(secret);
        let cached = self
            .entries
            .lock()
            .ok()
            .and_then(|entries| entries.get(&hash).cloned())
            .filter(|(_, at)| at.elapsed() < self.ttl);
        let record = match cached {
            Some((record, _)) => record,
            None => {
                let Some(record) = self
                    .store
                    .find_by_hash(&hash)
                    .await
                    .map_err(|e| ApiError::from(prism_core::ServiceError::from(e)))?
                else {
                    return Ok(None);
                };
                if let Ok(mut entries) = self.entries.lock() {
                    if entries.len() >= MAX_CACHED_KEYS {
                        entries.clear();
                    }
                    entries.insert(hash.clone(), (record.clone(), Instant::now()));
                }
                record
            }
        };
        Ok(key_matches(&record, &hash).then(|| record.tenant.clone()))
    }
}

/// Puts the caller's [`TenantId`] into the request extensions, or answers 401.
pub async fn require_key(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let mut values = request.headers().get_all(AUTHORIZATION).iter();
    let first = values.next();
    // Two credentials are ambiguous (a proxy may read the other one): refuse, never pick one.
    if values.next().is_some() {
        return ApiError::unauthorized("Send exactly one Authorization header.").into_response();
    }
    let presented = first
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .map(str::to_owned);
    let Some(secret) = presented else {
        return ApiError::unauthorized(
            "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'.",
        )
        .into_response();
    };
    match state.keys.tenant_for(&secret).await {
        Ok(Some(tenant)) => {
            tracing::Span::current().record("tenant", tenant.as_str());
            request.extensions_mut().insert(tenant);
            next.run(request).await
        }
        Ok(None) => ApiError::unauthorized("Incorrect API key provided.").into_response(),
        Err(error) => error.into_response(),
    }
}

/// The key of `Bearer <key>`; the scheme is case-insensitive (RFC 9110, section 11.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

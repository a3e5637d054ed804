//! Providers' own model lists (`GET {base_url}/models`), asked only of a provider with a glob
//! among its patterns and cached for a bounded time, so `GET /v1/models` costs no upstream call
//! per request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prism_core::models::ListedModel;
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Client, Url};
use serde::Deserialize;

/// A list an upstream answers with; only the fields Prism lists are read.
#[derive(Deserialize)]
struct ModelList {
    data: Vec<ModelEntry>,
}

#[derive(Deserialize)]
struct ModelEntry {
    id: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    owned_by: Option<String>,
}

/// A provider's list and when it was fetched.
type Fetched = (Instant, Arc<[ListedModel]>);

/// One fetched list per provider, each kept for `ttl`.
pub(crate) struct ModelCache {
    ttl: Duration,
    lists: Mutex<Vec<Option<Fetched>>>,
}

impl ModelCache {
    pub(crate) fn new(providers: usize, ttl: Duration) -> Self {
        Self {
            ttl,
            lists: Mutex::new(vec![None; providers]),
        }
    }

    /// Provider `index`'s list: cached while fresh, else fetched. A failed fetch yields an empty
    /// list that is not kept, so the next request asks again.
    pub(crate) async fn list(
        &self,
        index: usize,
        client: &Client,
        url: &Url,
        authorization: Option<&HeaderValue>,
        provider: &str,
    ) -> Arc<[ListedModel]> {
        if let Some(fresh) = self.fresh(index) {
            return fresh;
        }
        match fetch(client, url, authorization, provider).await {
            Ok(list) => {
                let list: Arc<[ListedModel]> = list.into();
                if let Ok(mut lists) = self.lists.lock()
                    && let Some(slot) = lists.get_mut(index)
                {
                    *slot = Some((Instant::now(), Arc::clone(&list)));
                }
                list
            }
            Err(reason) => {
                tracing::warn!(provider, %reason, "could not read the provider's model list");
                Arc::from(Vec::new())
            }
        }
    }

    fn fresh(&self, index: usize) -> Option<Arc<[ListedModel]>> {
        let lists = self.lists.lock().ok()?;
        match lists.get(index)? {
            Some((at, list)) if at.elapsed() < self.ttl => Some(Arc::clone(list)),
            _ => None,
        }
    }
}

/// How long a model list may take: it only feeds a listing, never a completion.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

async fn fetch(
    client: &Client,
    url: &Url,
    authorization: Option<&HeaderValue>,
    provider: &str,
) -> Result<Vec<ListedModel>, String> {
    let mut request = client.get(url.clone()).timeout(FETCH_TIMEOUT);
    if let Some(value) = authorization {
        request = request.header(AUTHORIZATION, value.clone());
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    if !response.status().is_success() {
        return Err(format!("status {}", response.status()));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    let list: ModelList = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(list
        .data
        .into_iter()
        .map(|m| ListedModel {
            id: m.id,
            created: m.created,
            owned_by: m.owned_by.unwrap_or_else(|| provider.to_owned()),
        })
        .collect())
}

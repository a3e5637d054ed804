//! The `Upstream` port over HTTP: one pooled client shared by every provider, so connections to
//! a provider are reused across jobs and relays alike.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prism_core::ApiEndpoint;
use prism_core::batches::modes::BatchRoute;
use prism_core::models::{ListedModel, ProviderModels, is_glob, listed_models};
use prism_core::ports::{Completion, Relay, Upstream, UpstreamError};
use prism_core::routing::glob_matches;
use prism_core::telemetry::{self, UpstreamOutcome};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Client, RequestBuilder, Response, Url, redirect};
use tracing::Instrument;

use crate::config::{ProviderConfig, UpstreamOptions};
use crate::models::ModelCache;
use crate::response;

/// Far above any sane concurrency per provider: idle connections are cheap, and a burst that
/// finds none must pay a fresh TCP + TLS handshake for each request.
const POOL_MAX_IDLE_PER_HOST: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamBuildError {
    #[error("provider '{provider}' has an invalid base_url: {reason}")]
    InvalidBaseUrl { provider: String, reason: String },
    #[error("provider '{provider}' has an unusable API key: {reason}")]
    InvalidApiKey {
        provider: String,
        reason: &'static str,
    },
    #[error("provider '{provider}' lists no model patterns, so it could never be routed to")]
    NoModels { provider: String },
    #[error("could not build the HTTP client")]
    Client(#[source] reqwest::Error),
}

/// A provider with everything a request needs prepared once.
pub(crate) struct Provider {
    name: String,
    /// The configured base URL, under which `/files` and `/batches` live.
    pub(crate) base: Url,
    /// One URL per endpoint, in `ApiEndpoint::ALL`'s order, built once.
    urls: [Url; ApiEndpoint::ALL.len()],
    /// The provider's own model list, asked when a pattern is a glob.
    models_url: Url,
    /// Marked sensitive so that `http`'s own `Debug` hides it too.
    pub(crate) authorization: Option<HeaderValue>,
    models: Vec<String>,
    batch: BatchRoute,
}

impl Provider {
    fn from_config(config: ProviderConfig) -> Result<Self, UpstreamBuildError> {
        let ProviderConfig {
            name,
            base_url,
            api_key,
            models,
            batch,
            flex_fallback,
        } = config;
        if models.is_empty() {
            return Err(UpstreamBuildError::NoModels { provider: name });
        }
        let urls = match endpoint_urls(&base_url) {
            Ok(urls) => urls,
            Err(reason) => {
                return Err(UpstreamBuildError::InvalidBaseUrl {
                    provider: name,
                    reason,
                });
            }
        };
        // Beside the endpoints, query string kept: `…/models`.
        let mut models_url = urls[0].clone();
        if let Ok(mut segments) = models_url.path_segments_mut() {
            segments.pop().pop().push("models");
        }
        let authorization = match api_key {
            None => None,
            Some(key) => match bearer(key.expose()) {
                Ok(value) => Some(value),
                Err(reason) => {
                    return Err(UpstreamBuildError::InvalidApiKey {
                        provider: name,
                        reason,
                    });
                }
            },
        };
        let Ok(base) = Url::parse(&base_url) else {
            return Err(UpstreamBuildError::InvalidBaseUrl {
                provider: name,
                reason: "it does not parse".to_owned(),
            });
        };
        Ok(Self {
            base,
            batch: BatchRoute {
                provider: name.clone(),
                mode: batch,
                flex_fallback,
            },
            name,
            urls,
            models_url,
            authorization,
            models,
        })
    }

    fn serves(&self, model: &str) -> bool {
        self.models
            .iter()
            .any(|pattern| glob_matches(pattern, model))
    }
}

/// Appends path segments rather than text, so a base URL with or without a trailing slash, or
/// with a query string, still yields `…/chat/completions`.
fn endpoint_urls(base_url: &str) -> Result<[Url; ApiEndpoint::ALL.len()], String> {
    let base = Url::parse(base_url).map_err(|e| e.to_string())?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(format!("scheme '{}' is not http or https", base.scheme()));
    }
    if base.cannot_be_a_base() {
        return Err("it cannot take a path".to_owned());
    }
    Ok(ApiEndpoint::ALL.map(|endpoint| {
        let mut url = base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(endpoint.provider_segments());
        }
        url
    }))
}

impl Provider {
    fn url(&self, endpoint: ApiEndpoint) -> &Url {
        let index = ApiEndpoint::ALL
            .iter()
            .position(|e| *e == endpoint)
            .unwrap_or_default();
        &self.urls[index]
    }
}

fn bearer(key: &str) -> Result<HeaderValue, &'static str> {
    if key.trim().is_empty() {
        // Most likely an unset environment variable; sending `Bearer ` would only earn 401s.
        return Err("it is empty");
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| "it contains characters not allowed in an HTTP header")?;
    value.set_sensitive(true);
    Ok(value)
}

/// The OpenAI-compatible upstream. Cloning is cheap and shares the connection pool.
#[derive(Clone)]
pub struct HttpUpstream {
    pub(crate) client: Client,
    providers: Arc<[Provider]>,
    model_lists: Arc<ModelCache>,
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstream")
            .field(
                "providers",
                &self.providers.iter().map(|p| &p.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HttpUpstream {
    pub fn new(
        providers: Vec<ProviderConfig>,
        options: UpstreamOptions,
    ) -> Result<Self, UpstreamBuildError> {
        let providers = providers
            .into_iter()
            .map(Provider::from_config)
            .collect::<Result<Arc<[_]>, _>>()?;
        let client = Client::builder()
            .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
            .tcp_nodelay(true)
            .connect_timeout(options.connect_timeout)
            // A redirect would replay the body and bearer key to wherever it points; an
            // OpenAI-compatible API never needs one.
            .redirect(redirect::Policy::none())
            .build()
            .map_err(UpstreamBuildError::Client)?;
        let model_lists = Arc::new(ModelCache::new(providers.len(), options.models_ttl));
        Ok(Self {
            client,
            providers,
            model_lists,
        })
    }

    /// The name of the provider that serves `model`, for logs and metrics.
    pub fn provider_name(&self, model: &str) -> Option<&str> {
        self.route(model).ok().map(|p| p.name.as_str())
    }

    /// The provider configured under `name` (the native batch path names providers).
    pub(crate) fn provider_named(&self, name: &str) -> Result<&Provider, UpstreamError> {
        self.providers
            .iter()
            .find(|p| p.name == name)
            .ok_or_else(|| UpstreamError::NoRoute(name.to_owned()))
    }

    fn route(&self, model: &str) -> Result<&Provider, UpstreamError> {
        self.providers
            .iter()
            .find(|p| p.serves(model))
            .ok_or_else(|| UpstreamError::NoRoute(model.to_owned()))
    }

    fn request(&self, provider: &Provider, endpoint: ApiEndpoint, body: Bytes) -> RequestBuilder {
        let request = self
            .client
            .post(provider.url(endpoint).clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        match &provider.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        }
    }

    async fn complete_once(
        &self,
        provider: &Provider,
        endpoint: ApiEndpoint,
        body: Bytes,
    ) -> Result<Completion, UpstreamError> {
        let response = self
            .request(provider, endpoint, body)
            .send()
            .await
            .map_err(send_error)?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        let body = response.bytes().await.map_err(|e| {
            if e.is_timeout() {
                UpstreamError::Timeout
            } else {
                UpstreamError::InvalidResponse(response::describe(e))
            }
        })?;
        response::completion(body)
    }

    async fn relay_once(
        &self,
        provider: &Provider,
        endpoint: ApiEndpoint,
        body: Bytes,
    ) -> Result<Relay, UpstreamError> {
        let response = match self.request(provider, endpoint, body.clone()).send().await {
            // Nothing reached the upstream, so a second try cannot duplicate a completion; any
            // further retrying is the client SDK's call.
            Err(error) if error.is_connect() => {
                tracing::debug!(error = %response::describe(error), "connect failed; retrying once");
                self.request(provider, endpoint, body).send().await
            }
            sent => sent,
        }
        .map_err(send_error)?;
        let status = response.status().as_u16();
        let headers = response::relay_headers(response.headers());
        tracing::debug!(status, "upstream answered; relaying");
        let body = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(|e| UpstreamError::InvalidResponse(response::describe(e))))
            .boxed();
        Ok(Relay {
            status,
            headers,
            body,
        })
    }
}

#[async_trait]
impl Upstream for HttpUpstream {
    fn routes(&self, model: &str) -> bool {
        self.route(model).is_ok()
    }

    fn batch_route(&self, model: &str) -> Option<BatchRoute> {
        self.route(model).ok().map(|p| p.batch.clone())
    }

    async fn models(&self) -> Vec<ListedModel> {
        let mut fetched = Vec::with_capacity(self.providers.len());
        for (index, provider) in self.providers.iter().enumerate() {
            let list = if provider.models.iter().any(|p| is_glob(p)) {
                self.model_lists
                    .list(
                        index,
                        &self.client,
                        &provider.models_url,
                        provider.authorization.as_ref(),
                        &provider.name,
                    )
                    .await
            } else {
                Arc::from(Vec::new())
            };
            fetched.push(list);
        }
        let providers: Vec<ProviderModels<'_>> = self
            .providers
            .iter()
            .zip(&fetched)
            .map(|(provider, list)| ProviderModels {
                name: &provider.name,
                patterns: &provider.models,
                fetched: list,
            })
            .collect();
        listed_models(&providers)
    }

    async fn complete(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        let provider = self.route(model)?;
        let span =
            tracing::info_span!("upstream_complete", provider = %provider.name, %endpoint, model);
        async {
            let started = Instant::now();
            // One deadline over connect, head and the whole body, which reqwest's own timeouts
            // do not express as simply.
            let outcome =
                tokio::time::timeout(timeout, self.complete_once(provider, endpoint, body))
                    .await
                    .unwrap_or(Err(UpstreamError::Timeout));
            let elapsed = started.elapsed();
            telemetry::record_upstream_call(
                &provider.name,
                model,
                UpstreamOutcome::of(&outcome),
                elapsed,
            );
            let elapsed_ms = elapsed.as_millis();
            match &outcome {
                Ok(_) => tracing::debug!(elapsed_ms, "upstream completed"),
                Err(error) => tracing::info!(elapsed_ms, %error, "upstream attempt failed"),
            }
            outcome
        }
        .instrument(span)
        .await
    }

    async fn relay(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
    ) -> Result<Relay, UpstreamError> {
        let provider = self.route(model)?;
        let span =
            tracing::info_span!("upstream_relay", provider = %provider.name, %endpoint, model);
        let started = Instant::now();
        let relayed = self
            .relay_once(provider, endpoint, body)
            .instrument(span)
            .await
            .inspect_err(|error| tracing::info!(%error, "upstream relay failed"));
        // Until the response head: the body streams on to the client afterwards.
        let outcome = match &relayed {
            Ok(relay) if relay.status == 429 => UpstreamOutcome::RateLimited,
            Ok(relay) if !(200..300).contains(&relay.status) => UpstreamOutcome::Status,
            Ok(_) => UpstreamOutcome::Ok,
            Err(_) => UpstreamOutcome::of(&relayed),
        };
        telemetry::record_upstream_call(&provider.name, model, outcome, started.elapsed());
        relayed
    }
}

/// A request that got no response head. A connect failure is `Connect` even when it was the
/// connect timeout, because either way nothing reached the upstream.
pub(crate) fn send_error(error: reqwest::Error) -> UpstreamError {
    let mapped = if error.is_connect() {
        UpstreamError::Connect
    } else if error.is_timeout() {
        UpstreamError::Timeout
    } else {
        UpstreamError::Connect
    };
    tracing::debug!(error = %response::describe(error), "upstream request failed");
    mapped
}

pub(crate) async fn status_error(mut response: Response) -> UpstreamError {
    let status = response.status().as_u16();
    let retry_after = response::retry_after(response.headers(), SystemTime::now());
    let should_retry = response::should_retry(response.headers());
    let mut body = Vec::new();
    // A body that breaks off still leaves the status and headers worth reporting.
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = response::MAX_ERROR_BODY - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() == response::MAX_ERROR_BODY {
            break;
        }
    }
    UpstreamError::Status {
        status,
        error: response::job_error(&body),
        retry_after,
        should_retry,
    }
}

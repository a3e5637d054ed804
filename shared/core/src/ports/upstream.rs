//! Providers: the upstream call, its answers and errors, and a provider's own Batch API.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

use crate::batches::native::{NewProviderBatch, ProviderBatch};
use crate::endpoint::ApiEndpoint;
use crate::jobs::JobError;

/// An answer the upstream gave with 2xx: the raw JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub body: String,
}

/// An upstream response relayed as it arrives (the synchronous path).
pub struct Relay {
    pub status: u16,
    /// Headers worth passing on: content type, retry hints, the provider's request id.
    pub headers: Vec<(String, String)>,
    pub body: BoxStream<'static, Result<Bytes, UpstreamError>>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UpstreamError {
    #[error("no provider routes model '{0}'")]
    NoRoute(String),
    #[error("upstream answered {status}")]
    Status {
        status: u16,
        /// The upstream's OpenAI-shaped error, when it sent one.
        error: Option<JobError>,
        retry_after: Option<Duration>,
        should_retry: Option<bool>,
    },
    #[error("upstream timed out")]
    Timeout,
    #[error("could not connect to the upstream")]
    Connect,
    #[error("upstream response was not valid: {0}")]
    InvalidResponse(String),
}

#[async_trait]
pub trait Upstream: Send + Sync {
    /// Whether some configured provider serves this model.
    fn routes(&self, model: &str) -> bool;

    /// The provider serving `model` and how it runs batch lines; `None` (the default) runs
    /// them at the gateway, at the standard tier.
    fn batch_route(&self, _model: &str) -> Option<crate::batches::modes::BatchRoute> {
        None
    }

    /// The models to list (see [`crate::models::listed_models`]). A provider whose own list
    /// cannot be read contributes its literal names only; none by default.
    async fn models(&self) -> Vec<crate::models::ListedModel> {
        Vec::new()
    }

    /// One non-streamed attempt at `endpoint`, bounded by `timeout`. Dropping the future aborts
    /// the request.
    async fn complete(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError>;

    /// Forwards a client's request and relays the answer as it streams in. Retries only a
    /// connection that failed before anything was sent.
    async fn relay(
        &self,
        endpoint: ApiEndpoint,
        model: &str,
        body: Bytes,
    ) -> Result<Relay, UpstreamError>;
}

/// A provider's own Files and Batch API (OpenAI's `/v1/files`, `/v1/batches`), for the lines a
/// `native` provider runs. Providers are named as configured; ids are the provider's.
#[async_trait]
pub trait ProviderBatches: Send + Sync {
    /// Uploads a batch input file (purpose `batch`); the provider's file id.
    async fn upload_batch_file(
        &self,
        provider: &str,
        filename: &str,
        body: Bytes,
    ) -> Result<String, UpstreamError>;

    /// Creates a provider batch over an uploaded input file (`completion_window: "24h"`).
    async fn create_batch(
        &self,
        provider: &str,
        request: &NewProviderBatch,
    ) -> Result<ProviderBatch, UpstreamError>;

    async fn retrieve_batch(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<ProviderBatch, UpstreamError>;

    /// The provider batch whose metadata holds `key = value`, looked up through the list
    /// (providers filter lists by nothing but a cursor), newest first, down to batches created
    /// at `created_since` (unix seconds): the one sought is never older.
    async fn find_batch(
        &self,
        provider: &str,
        key: &str,
        value: &str,
        created_since: u64,
    ) -> Result<Option<ProviderBatch>, UpstreamError>;

    async fn cancel_batch(&self, provider: &str, id: &str) -> Result<ProviderBatch, UpstreamError>;

    /// A provider file's bytes as they arrive.
    async fn file_content(
        &self,
        provider: &str,
        file_id: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, UpstreamError>>, UpstreamError>;

    /// Deletes a provider file; one already gone counts as deleted.
    async fn delete_file(&self, provider: &str, file_id: &str) -> Result<(), UpstreamError>;
}

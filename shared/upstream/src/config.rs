//! What an operator configures per provider, and the knobs of the shared HTTP client.

use std::fmt;
use std::time::Duration;

use prism_core::batches::modes::{BatchMode, FlexFallback};

/// An upstream API key. `Debug` prints `***` and there is deliberately no `Display`, so a logged
/// or printed config never carries the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself; meant only for building the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for SecretKey {
    fn from(key: String) -> Self {
        Self(key)
    }
}

impl From<&str> for SecretKey {
    fn from(key: &str) -> Self {
        Self(key.to_owned())
    }
}

/// One OpenAI-compatible provider. Providers are tried in order: the first whose patterns match
/// a model serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// Shown in logs and spans.
    pub name: String,
    /// Everything before an endpoint's path (`/chat/completions`, `/embeddings`, ...), e.g. `https://api.openai.com/v1`; a query string
    /// is kept.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`; `None` sends no `Authorization` at all.
    pub api_key: Option<SecretKey>,
    /// Glob patterns (`*`, `?`) of the model names this provider serves.
    pub models: Vec<String>,
    /// How the batch lines routed here run (config `batch`).
    pub batch: BatchMode,
    /// What a flex line does when the flex tier is unavailable (config `flex_fallback`).
    pub flex_fallback: FlexFallback,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamOptions {
    /// Bounds establishing a connection on both paths; it is the only deadline a relay has, since
    /// a stream may legitimately run for minutes.
    pub connect_timeout: Duration,
    /// How long a provider's own model list (`GET /models`) is reused for `GET /v1/models`.
    pub models_ttl: Duration,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            models_ttl: Duration::from_secs(300),
        }
    }
}

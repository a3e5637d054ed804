//! `[models]`: how long a provider's own model list is reused.

use std::time::Duration;

use prism_upstream::UpstreamOptions;
use serde::Deserialize;

/// `[models]`: the model list (`GET /v1/models`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// How long a provider's own model list (its `GET /models`, asked for providers with a glob
    /// among their patterns) is reused before it is fetched again.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for ModelSection {
    fn default() -> Self {
        Self {
            cache_ttl: UpstreamOptions::default().models_ttl,
        }
    }
}

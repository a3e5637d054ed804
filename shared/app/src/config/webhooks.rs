//! `[webhooks]`: which targets endpoints may name, and how deliveries retry.

use std::time::Duration;

use prism_core::webhooks::WebhookPolicy;
use serde::Deserialize;

/// `[webhooks]`: delivery of events for finished work.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookSection {
    /// Lets endpoints target loopback, private and link-local addresses over plain http (tests,
    /// a receiver on the same box). Off by default: https to public addresses only.
    pub allow_private_targets: bool,
    /// The first retry's base wait; each later one doubles it, up to an hour.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
}

impl Default for WebhookSection {
    fn default() -> Self {
        let policy = WebhookPolicy::default();
        Self {
            allow_private_targets: policy.allow_private_targets,
            retry_base: policy.retry_base,
        }
    }
}

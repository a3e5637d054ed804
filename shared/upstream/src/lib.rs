//! Prism's OpenAI-compatible upstream client: routes a model to the first provider whose globs
//! match it and implements [`prism_core::ports::Upstream`] over one pooled `reqwest` client;
//! the provider's own Files and Batch APIs behind [`prism_core::ports::ProviderBatches`] on the
//! same client; and [`HttpWebhookSender`], the webhook delivery client behind `WebhookSender`.

mod batches;
mod client;
mod config;
mod models;
mod response;
mod webhook;

pub use client::{HttpUpstream, UpstreamBuildError};
pub use config::{ProviderConfig, SecretKey, UpstreamOptions};
pub use response::MAX_RETRY_AFTER;
pub use webhook::HttpWebhookSender;

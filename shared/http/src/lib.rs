//! Prism's HTTP API as an axum router, shared by `prism serve` and the `api` Lambda: routes,
//! authentication, request ids, body limits, and the OpenAI error mapping.

mod auth;
mod error;
mod files;
mod metrics;
mod multipart_guard;
mod recurring;
mod request;
mod routes;
mod uploads;
mod webhooks;
mod wire;

pub use auth::{DEFAULT_KEY_CACHE_TTL, KeyCache};
pub use error::ApiError;
pub use routes::{AppState, DEFAULT_MAX_INFLIGHT_BODY_BYTES, HttpLimits, router};

//! Prism's HTTP API as an axum router, shared by `prism serve` and the `api` Lambda: routes,
//! authentication, request ids, body limits, the OpenAI error mapping, and the OpenAPI document.

mod auth;
mod batches;
mod console;
mod error;
mod files;
mod forward;
mod metrics;
mod multipart_guard;
mod openapi;
mod recurring;
mod request;
mod responses;
mod routes;
mod uploads;
mod usage;
mod webhooks;
mod wire;

pub use auth::{DEFAULT_KEY_CACHE_TTL, KeyCache};
pub use error::ApiError;
pub use openapi::ApiDoc;
pub use routes::{AppState, DEFAULT_MAX_INFLIGHT_BODY_BYTES, HttpLimits, StateParts, router};

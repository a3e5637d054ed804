//! The HTTP API's state, built in one place for every host of the router: `prism serve` on
//! either backend and the `api` Lambda.

use std::sync::Arc;
use std::time::Duration;

use prism_core::deps::Deps;
use prism_core::ports::KeyStore;
use prism_http::{AppState, DEFAULT_KEY_CACHE_TTL, HttpLimits, KeyCache};

use crate::config::Config;

/// What serves the router, for the limits that differ between hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpHost {
    /// `prism serve`'s own listener: bodies stream in and are cut off when they stall.
    Listener,
    /// The `api` Lambda: the event carries the whole body, and a buffered call must answer
    /// before API Gateway closes an idle stream.
    Lambda,
}

/// A buffered (non-streamed) call on Lambda sends nothing until its upstream has answered, and
/// API Gateway's regional endpoints close a stream idle for 5 minutes; such a call answers 504
/// (with `x-should-retry: false`) before that. Behind the function URL alone,
/// `http.sync_deadline` can raise it to just under the 15-minute invocation limit.
pub const LAMBDA_BUFFERED_DEADLINE: Duration = Duration::from_secs(4 * 60 + 45);

/// The router's state: the core's dependencies, the key cache over `keys`, and the limits of
/// `config.http` as `host` applies them.
pub fn app_state(config: &Config, deps: Deps, keys: Arc<dyn KeyStore>, host: HttpHost) -> AppState {
    let http = &config.http;
    let limits = match host {
        HttpHost::Listener => HttpLimits {
            max_body_bytes: http.max_body_bytes,
            sync_deadline: http.sync_deadline,
            max_inflight_body_bytes: http.max_inflight_body_bytes,
            body_read_timeout: Some(http.body_read_timeout),
        },
        HttpHost::Lambda => HttpLimits {
            max_body_bytes: http.max_body_bytes,
            sync_deadline: Some(http.sync_deadline.unwrap_or(LAMBDA_BUFFERED_DEADLINE)),
            max_inflight_body_bytes: http.max_inflight_body_bytes,
            // The Lambda event carries the whole body: there is nothing to wait for.
            body_read_timeout: None,
        },
    };
    AppState::new(deps, KeyCache::new(keys, DEFAULT_KEY_CACHE_TTL), limits)
}

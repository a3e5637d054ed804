//! `[http]`: request size and time limits, and `prism serve`'s connection limits.

use std::time::Duration;

use serde::Deserialize;

/// Lambda's request payload limit, so both backends refuse the same bodies.
pub const DEFAULT_MAX_BODY_BYTES: usize = 6 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Request bodies above this many bytes are answered 413.
    pub max_body_bytes: usize,
    /// A non-streamed synchronous completion is answered 504 after this long (keep it under any
    /// gateway timeout in front); unset means no limit.
    #[serde(with = "humantime_serde")]
    pub sync_deadline: Option<Duration>,
    /// Request-body bytes the process holds in memory at once; past it, 503 with `retry-after`.
    pub max_inflight_body_bytes: usize,
    /// `prism serve`: a connection that has not sent a whole request head (request line and
    /// headers) this long after it was opened or went idle is closed.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// `prism serve`: a request body that sends nothing for this long is answered 408.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// `prism serve`: open connections at most; further ones wait in the listen backlog.
    pub max_connections: usize,
}

impl Default for HttpSection {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            sync_deadline: None,
            // prism_http::DEFAULT_MAX_INFLIGHT_BODY_BYTES (this crate does not depend on it).
            max_inflight_body_bytes: 192 * 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
        }
    }
}

//! The trace context a queue message carries (a W3C `traceparent`), so one async job is one
//! trace from the HTTP request through the queue to the worker and its upstream call.
//!
//! Core knows no tracing backend: a host that exports traces installs a [`TracePropagator`]
//! once at start; without one, messages carry nothing and workers start fresh traces.

use std::sync::OnceLock;

/// A W3C `traceparent` value (`00-<trace id>-<span id>-<flags>`), as stored beside a message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceContext(pub String);

impl TraceContext {
    /// Longest value kept: a `traceparent` is 55 characters; anything far longer is not one.
    const MAX_LEN: usize = 128;

    /// A stored or received value, if it can be a `traceparent` (it never names a span of a
    /// tenant's choosing beyond that).
    pub fn parse(value: &str) -> Option<Self> {
        (!value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .then(|| Self(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Moves the current span's context into a message and back out onto a worker's span.
pub trait TracePropagator: Send + Sync {
    /// The context of the current span, if it is being traced.
    fn current(&self) -> Option<TraceContext>;

    /// Makes `parent` the parent of `span` (a worker's span for one delivery).
    fn adopt(&self, span: &tracing::Span, parent: &TraceContext);
}

static PROPAGATOR: OnceLock<Box<dyn TracePropagator>> = OnceLock::new();

/// Installs the process's propagator; a second call keeps the first.
pub fn install(propagator: Box<dyn TracePropagator>) {
    let _ = PROPAGATOR.set(propagator);
}

/// What an adapter stores beside a message it enqueues now.
pub fn current() -> Option<TraceContext> {
    PROPAGATOR.get()?.current()
}

/// Continues a message's trace on the span that handles it.
pub fn adopt(span: &tracing::Span, parent: Option<&TraceContext>) {
    if let (Some(propagator), Some(parent)) = (PROPAGATOR.get(), parent) {
        propagator.adopt(span, parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_parses_and_anything_else_is_dropped() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(TraceContext::parse(value).map(|t| t.0), Some(value.into()));
        assert_eq!(TraceContext::parse(""), None);
        assert_eq!(TraceContext::parse("00-<script>"), None);
        assert_eq!(TraceContext::parse(&"a".repeat(200)), None);
    }
}

//! Logging for the functions: JSON lines on stdout, which Lambda ships to CloudWatch.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber: one JSON object per line, filtered by `RUST_LOG` (default
/// `info`). No colours, since CloudWatch shows escape codes verbatim, and no timestamp, since
/// CloudWatch stamps every line itself. Every line carries the fields of all the spans it sits
/// in (request, message, job and tenant ids).
/// Calling it twice keeps the first subscriber.
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // An error only means a subscriber is already installed (a warm test binary, say).
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .with_span_list(true)
        .try_init();
}

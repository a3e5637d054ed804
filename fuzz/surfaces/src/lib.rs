//! The surfaces Prism exposes to untrusted bytes, one plain function each, called with the same
//! caps the server uses. A function returns normally for every input the product handles
//! correctly and panics on a property violation: the cargo-fuzz targets in `fuzz/fuzz_targets`
//! call them under libFuzzer (nightly), and `tests/replay.rs` calls them on every committed
//! corpus entry and regression input on stable.
#![allow(
    clippy::panic,
    clippy::expect_used,
    reason = "a fuzz harness reports a broken property by panicking, which is what libFuzzer catches"
)]

mod chat;
mod lambda;
mod multipart;
mod planner;
mod recurring;
mod scheduled;

pub use chat::chat_request;
pub use lambda::lambda_events;
pub use multipart::multipart_upload;
pub use planner::batch_planner;
pub use recurring::recurring_schedule;
pub use scheduled::scheduled_request;

/// A target's body: returns for every input the product handles right, panics otherwise.
pub type Target = fn(&[u8]);

/// Every target, by the name of its cargo-fuzz binary and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("batch_planner", batch_planner),
    ("chat_request", chat_request),
    ("scheduled_request", scheduled_request),
    ("multipart_upload", multipart_upload),
    ("lambda_events", lambda_events),
    ("recurring_schedule", recurring_schedule),
];

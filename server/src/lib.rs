//! The `prism` binary's library half: the commands (`serve`, `keys`, `webhooks`) over the
//! backends' wiring functions (`prism_embedded::EmbeddedBackend`, `prism_app::aws::connect_aws`),
//! and the commands that are clients of a running Prism (`batches`, `jobs`, `scheduled`:
//! `remote`) over its API as plain functions (`client`); `telemetry` (logs, metrics, traces). `main.rs` only parses arguments and
//! reports errors.

pub mod cli;
pub mod client;
pub mod keys;
pub mod remote;
pub mod remote_args;
pub mod serve;
pub mod telemetry;
pub mod webhooks;

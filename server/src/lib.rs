//! The `prism` binary's library half: the commands (`serve`, `keys`, `webhooks`) over the backends' wiring
//! functions (`prism_embedded::EmbeddedBackend`, `prism_app::aws::connect_aws`). `main.rs` only
//! parses arguments and reports errors.

pub mod cli;
pub mod keys;
pub mod serve;
pub mod webhooks;

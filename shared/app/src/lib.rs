//! Prism's application wiring, shared by the `prism` binary and the Lambda functions:
//! configuration, and building the core's dependencies ([`prism_core::deps::Deps`]) for the
//! AWS backend (the embedded backend's is `prism_embedded::EmbeddedBackend::new`, which the
//! `prism` binary, the only one that runs it, calls).

pub mod aws;
pub mod config;

//! Prism's application wiring, shared by the `prism` binary and the Lambda functions:
//! configuration, and building the core's dependencies ([`prism_core::service::Deps`]) for the
//! AWS backend (the embedded backend's wiring lives with the `prism` binary, which alone runs it).

pub mod aws;
pub mod config;

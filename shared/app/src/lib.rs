//! prism-app: Prism's application wiring, shared by the `prism` binary and the Lambda functions:
//! configuration ([`config`]), the AWS backend's one wiring function ([`aws::connect_aws`]; the
//! embedded backend's is `prism_embedded::EmbeddedBackend::new`), the HTTP API's state built in
//! one place ([`http::app_state`]), and the AWS worker runtime of `prism serve --backend aws`
//! ([`runtime::run_workers`]).

pub mod aws;
pub mod config;
pub mod http;
pub mod prices;
pub mod runtime;
pub mod traces;

//! Dev and test tooling, never product code: Prism's Lambda binaries run on this machine as they
//! run on AWS. cargo-lambda's runtime emulator serves the invoke API and the function URL; each
//! function binary runs against it with the environment `infra/template.yaml` gives it; and
//! local stand-ins do what AWS does between the functions, all read from the template: the SQS
//! event source mappings ([`event_sources`]), the schedule rules and EventBridge Scheduler's
//! deliveries ([`timers`]). `prism-local-aws` (and `scripts/local-aws.sh`) wraps it for people;
//! the end-to-end suites use it with `PRISM_TEST_BACKEND=lambda`.

pub mod event_sources;
pub mod functions;
pub mod invoke;
mod stack;
pub mod timers;

pub use stack::{LocalFunctions, RunOptions, create_api_key, emulator_env};

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot start {0}: {1}")]
    Spawn(String, std::io::Error),
    #[error("{0} did not become ready")]
    NotReady(String),
    #[error("the template: {0}")]
    Template(String),
    #[error("storage: {0}")]
    Store(String),
}

impl From<prism_aws::stack::StackError> for LocalError {
    fn from(error: prism_aws::stack::StackError) -> Self {
        LocalError::Template(error.to_string())
    }
}

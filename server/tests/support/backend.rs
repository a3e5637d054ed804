//! Which backend serves a test (`PRISM_TEST_BACKEND`): embedded storage, `prism serve --backend
//! aws` on the emulator, or the Lambda functions under cargo-lambda; its provisioning, the
//! environment every `prism` command of the test gets, and how long a crash takes to recover.

use std::path::Path;

/// What serves the suites: `prism serve` on embedded storage; with `PRISM_TEST_BACKEND=aws`,
/// `prism serve --backend aws` against DynamoDB, SQS and S3 on the emulator named by
/// `AWS_ENDPOINT_URL` (scripts/test.sh starts it); with `PRISM_TEST_BACKEND=lambda`, the eight
/// Lambda binaries under cargo-lambda's runtime emulator over the same emulator, with the local
/// stand-ins for event source mappings and schedules (`prism-lambda-local`).
#[derive(Debug, Clone)]
pub enum Backend {
    Embedded,
    Aws(Box<prism_aws::AwsSettings>),
    Lambda(Box<prism_aws::ProvisionedStack>),
}

static NEXT_PREFIX: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Visibility timeout of the emulator's queues: short, so a crashed consumer's messages come
/// back within a test.
const TEST_VISIBILITY_SECONDS: u32 = 30;

/// How long work cut off by a kill -9 may take to come back and finish on any backend: the
/// emulator's queues redeliver it only after their visibility timeout, plus time to run it on a
/// loaded machine.
pub const AFTER_A_CRASH: std::time::Duration =
    std::time::Duration::from_secs(TEST_VISIBILITY_SECONDS as u64 + 30);

fn unique_prefix(kind: &str) -> String {
    let n = NEXT_PREFIX.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    format!("{kind}-{}-{n}", std::process::id())
}

pub(super) async fn backend_for_test(config: &Path) -> Backend {
    let needs_emulator = |backend: &str| {
        assert!(
            std::env::var("AWS_ENDPOINT_URL").is_ok(),
            "PRISM_TEST_BACKEND={backend} needs AWS_ENDPOINT_URL: run scripts/test.sh"
        );
    };
    match std::env::var("PRISM_TEST_BACKEND").as_deref() {
        Ok("aws") => {
            needs_emulator("aws");
            let prefix = unique_prefix("e2e");
            Backend::Aws(Box::new(
                prism_aws::provision(&prefix, TEST_VISIBILITY_SECONDS)
                    .await
                    .unwrap(),
            ))
        }
        Ok("lambda") => {
            needs_emulator("lambda");
            let options = prism_aws::ProvisionOptions {
                visibility_override: Some(TEST_VISIBILITY_SECONDS),
                config_toml: Some(std::fs::read_to_string(config).unwrap()),
            };
            let stack = prism_aws::provision_stack(&unique_prefix("fn"), &options)
                .await
                .unwrap();
            Backend::Lambda(Box::new(stack))
        }
        Ok("embedded") | Err(_) => Backend::Embedded,
        Ok(other) => panic!("unknown PRISM_TEST_BACKEND {other:?}"),
    }
}

impl Backend {
    /// Environment for every `prism` command of this test.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self {
            Backend::Embedded => vec![("PRISM_BACKEND", "embedded".into())],
            Backend::Aws(s) => aws_env(s),
            Backend::Lambda(stack) => aws_env(&stack.settings),
        }
    }

    /// Either AWS backend: the same storage, limits and emulator.
    pub fn is_aws(&self) -> bool {
        matches!(self, Backend::Aws(_) | Backend::Lambda(_))
    }

    pub fn is_lambda(&self) -> bool {
        matches!(self, Backend::Lambda(_))
    }
}

fn aws_env(settings: &prism_aws::AwsSettings) -> Vec<(&'static str, String)> {
    let mut env = settings.to_env();
    env.push(("PRISM_BACKEND", "aws".into()));
    env
}

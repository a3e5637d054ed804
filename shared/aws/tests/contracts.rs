//! The storage-port contract suites against DynamoDB, SQS and S3 on the emulator that
//! `scripts/test.sh` starts (it exports `AWS_ENDPOINT_URL`). Every test gets its own resources.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use prism_aws::{AwsBackend, provision};
use prism_core::SystemClock;
use prism_testkit::contracts::JobPorts;
use prism_testkit::job_port_contract;

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn fresh() -> JobPorts {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run these tests through scripts/test.sh, which starts the emulator"
    );
    let prefix = format!(
        "contract-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let backend = AwsBackend::connect(settings, Duration::ZERO).await;
    JobPorts {
        store: Arc::new(backend.jobs.clone()),
        queue: Arc::new(backend.queue.clone()),
        keys: Arc::new(backend.keys.clone()),
        clock: Arc::new(SystemClock),
    }
}

job_port_contract!(fresh);

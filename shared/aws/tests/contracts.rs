//! The storage-port contract suites against DynamoDB, SQS and S3 on the emulator that
//! `scripts/test.sh` starts (it exports `AWS_ENDPOINT_URL`). Every test gets its own resources.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use prism_aws::{AwsBackend, provision};
use prism_core::{Clock, SystemClock};
use prism_testkit::contracts::{Ports, ScheduleTime};
use prism_testkit::port_contract;
use prism_testkit::schedule_pump::EmulatorSchedulePump;

static NEXT: AtomicU32 = AtomicU32::new(0);

async fn fresh() -> Ports {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "AWS_ENDPOINT_URL is not set: run scripts/test.sh (it starts the emulator), or start `.venv/bin/moto_server -H 127.0.0.1 -p PORT` and export AWS_ENDPOINT_URL=http://127.0.0.1:PORT AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing"
    );
    let prefix = format!(
        "contract-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let pump = EmulatorSchedulePump::connect(&settings.schedules.group).await;
    let backend = AwsBackend::connect(settings, Duration::ZERO).await;
    Ports {
        jobs: Arc::new(backend.jobs.clone()),
        queue: Arc::new(backend.queues.get(prism_core::Stage::Jobs).clone()),
        keys: Arc::new(backend.keys.clone()),
        files: Arc::new(backend.files.clone()),
        blobs: Arc::new(backend.blobs.clone()),
        batches: Arc::new(backend.batches.clone()),
        scheduler: Arc::new(backend.scheduler.clone()),
        schedules: Arc::new(PumpedTime(pump)),
        clock: Arc::new(SystemClock),
    }
}

/// Time passes for schedules only: the pump fires what would be due by then.
struct PumpedTime(EmulatorSchedulePump);

#[async_trait]
impl ScheduleTime for PumpedTime {
    async fn pass(&self, by: Duration) {
        self.0.fire_due(SystemClock.now().plus(by)).await;
    }
}

port_contract!(fresh);

async fn fresh_uploads() -> prism_testkit::contracts::UploadPorts {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "run scripts/test.sh: it starts the emulator"
    );
    let prefix = format!(
        "uploads-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let backend = AwsBackend::connect(settings, Duration::ZERO).await;
    prism_testkit::contracts::UploadPorts {
        uploads: Arc::new(backend.uploads.clone()),
        files: Arc::new(backend.files.clone()),
        clock: Arc::new(SystemClock),
    }
}

prism_testkit::upload_contract!(fresh_uploads);

async fn fresh_recurring() -> prism_testkit::contracts::RecurringPorts {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "run scripts/test.sh: it starts the emulator"
    );
    let prefix = format!(
        "recurring-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let pump = EmulatorSchedulePump::connect(&settings.schedules.group).await;
    let backend = AwsBackend::connect(settings, Duration::ZERO).await;
    prism_testkit::contracts::RecurringPorts {
        recurring: Arc::new(backend.recurring.clone()),
        trigger: Arc::new(backend.recurring_trigger.clone()),
        queue: Arc::new(backend.queues.get(prism_core::Stage::Jobs).clone()),
        schedules: Arc::new(PumpedTime(pump)),
        clock: Arc::new(SystemClock),
    }
}

prism_testkit::recurring_contract!(fresh_recurring);

async fn fresh_webhooks() -> prism_testkit::contracts::WebhookPorts {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok(),
        "run scripts/test.sh: it starts the emulator"
    );
    let prefix = format!(
        "webhooks-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    );
    let settings = provision(&prefix, 30).await.unwrap();
    let backend = AwsBackend::connect(settings, Duration::ZERO).await;
    prism_testkit::contracts::WebhookPorts {
        webhooks: Arc::new(backend.webhooks.clone()),
        clock: Arc::new(SystemClock),
    }
}

prism_testkit::webhook_contract!(fresh_webhooks);

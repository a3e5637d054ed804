//! Clocks for contract suites: a manual one for adapters that take time from Prism, and the
//! `TestClock` seam that lets a suite "wait" the same way against a real service.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use prism_core::{Clock, SystemClock, Timestamp};

/// A clock the suite can advance; adapters under test read time from it.
#[async_trait]
pub trait TestClock: Clock {
    /// Moves time forward by `by`: instantly for a manual clock, by sleeping for a real one.
    async fn advance(&self, by: Duration);
}

#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<AtomicI64>,
}

impl ManualClock {
    /// Starts at the current wall-clock time, so ids and timestamps look realistic.
    pub fn new() -> Self {
        Self {
            now: Arc::new(AtomicI64::new(SystemClock.now().millis())),
        }
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}

#[async_trait]
impl TestClock for ManualClock {
    async fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

#[async_trait]
impl TestClock for SystemClock {
    async fn advance(&self, by: Duration) {
        tokio::time::sleep(by).await;
    }
}

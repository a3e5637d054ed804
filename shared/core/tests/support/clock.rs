//! A clock tests move by hand. Core cannot depend on testkit (testkit depends on core), so this
//! is the small twin of testkit's `ManualClock`. Under tokio's paused time it can also follow
//! tokio's clock, so the worker's sleeps (retry waits, cancel polls) move the store's time too.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prism_core::{Clock, Timestamp};
use tokio::time::Instant;

/// 2030-01-01T00:00:00Z: a fixed start, so tests can write RFC 3339 times as literals.
pub const START: Timestamp = Timestamp(1_893_456_000_000);

#[derive(Debug)]
pub struct ManualClock {
    offset_ms: AtomicI64,
    /// When set, tokio's (paused) time elapsed since this instant is added to the reading.
    origin: Option<Instant>,
}

impl ManualClock {
    /// Stands still at [`START`] until advanced.
    pub fn new() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            origin: None,
        }
    }

    /// Starts at [`START`] and moves with tokio's clock (and with [`ManualClock::advance`]).
    pub fn following_tokio() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            origin: Some(Instant::now()),
        }
    }

    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        let followed = self.origin.map_or(Duration::ZERO, |o| o.elapsed());
        START.plus(followed).plus(Duration::from_millis(
            u64::try_from(self.offset_ms.load(Ordering::SeqCst)).unwrap_or(0),
        ))
    }
}

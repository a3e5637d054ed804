//! Latency histograms in microseconds and their summaries in milliseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Highest latency the histograms track exactly (one hour); longer ones saturate to it.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A histogram of durations with microsecond resolution and three significant figures.
pub struct Latencies {
    histogram: Histogram<u64>,
}

impl Latencies {
    pub fn new() -> anyhow::Result<Self> {
        let histogram = Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3)
            .context("cannot create a latency histogram")?;
        Ok(Self { histogram })
    }

    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    /// Adds every value `other` recorded.
    pub fn merge(&mut self, other: &Latencies) -> anyhow::Result<()> {
        self.histogram
            .add(&other.histogram)
            .context("cannot merge latency histograms")
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        LatencySummary {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// Percentiles in milliseconds, with microsecond precision.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl LatencySummary {
    /// `p50 0.412  p90 0.600  p99 1.234  p99.9 3.210  max 5.432  mean 0.450`
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3}",
            self.p50, self.p90, self.p99, self.p999, self.max, self.mean
        )
    }
}

/// Failed requests counted by kind (`http 503`, `timeout`, `connect`, …).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorCounts(pub BTreeMap<String, u64>);

impl ErrorCounts {
    pub fn add(&mut self, kind: String) {
        *self.0.entry(kind).or_default() += 1;
    }

    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Adds every failure `other` counted (one task's tally into the run's).
    pub fn merge(&mut self, other: ErrorCounts) {
        for (kind, count) in other.0 {
            *self.0.entry(kind).or_default() += count;
        }
    }

    /// `none` or `http 503 x12, timeout x3`
    pub fn line(&self) -> String {
        if self.0.is_empty() {
            return "none".to_owned();
        }
        self.0
            .iter()
            .map(|(kind, n)| format!("{kind} x{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_reported_in_milliseconds_with_microsecond_precision() {
        let mut l = Latencies::new().unwrap();
        for us in 1..=1000u64 {
            l.record(Duration::from_micros(us));
        }
        let s = l.summary();
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 0.5).abs() < 0.002, "{s:?}");
        assert!((s.p99 - 0.99).abs() < 0.002, "{s:?}");
        assert!((s.max - 1.0).abs() < 0.002, "{s:?}");
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeroes() {
        let s = Latencies::new().unwrap().summary();
        assert_eq!(s.count, 0);
        assert_eq!(s.p99, 0.0);
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let mut e = ErrorCounts::default();
        e.add("timeout".into());
        e.add("http 503".into());
        e.add("timeout".into());
        assert_eq!(e.total(), 3);
        assert_eq!(e.line(), "http 503 x1, timeout x2");
    }

    #[test]
    fn merged_counts_add_up_by_kind() {
        let mut run = ErrorCounts::default();
        run.add("timeout".into());
        let mut task = ErrorCounts::default();
        task.add("timeout".into());
        task.add("connect".into());
        run.merge(task);
        assert_eq!(run.line(), "connect x1, timeout x2");
    }
}

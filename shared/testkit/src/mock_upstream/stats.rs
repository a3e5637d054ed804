//! Per-model request and abort counters, and the guard that notices a request dropped mid-flight.
//!
//! The map sits behind a plain mutex held only for a lookup and an increment, never across an
//! await, so thousands of requests per second do not queue behind each other.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::{Deserialize, Serialize};

/// What `GET /_stats` reports: requests received, answered and abandoned, per model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    /// Every request counted under its `model`; unparsable bodies count under `""`.
    pub requests: BTreeMap<String, u64>,
    /// Requests whose handling was dropped before it finished, i.e. the client went away.
    pub aborted: BTreeMap<String, u64>,
    /// Requests answered in full: a client that got one holds a result it was billed for.
    #[serde(default)]
    pub finished: BTreeMap<String, u64>,
    /// For `mock-chaos` models: what each call drew (`ok`, `429`, `500`, `hang`, `truncated`),
    /// counted once the latency is over, so a call its client abandoned before then is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drawn: BTreeMap<String, BTreeMap<String, u64>>,
    /// Chat requests that asked for `service_tier: "flex"`, per model.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flex: BTreeMap<String, u64>,
    /// Calls to the Files and Batch APIs, by kind (`files.create`, `batches.create`, ...).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub batch_api: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default)]
struct Counters {
    requests: u64,
    aborted: u64,
    finished: u64,
    drawn: BTreeMap<&'static str, u64>,
    flex: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    by_model: Mutex<HashMap<String, Counters>>,
    batch_api: Mutex<BTreeMap<&'static str, u64>>,
}

impl Stats {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Counters>> {
        // Counters stay consistent even if a holder panicked: each update is a single add.
        self.by_model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts one more request for `model` and returns its 1-based call number.
    pub(crate) fn record_request(&self, model: &str) -> u64 {
        self.bump(model, |counters| &mut counters.requests)
    }

    /// Counts what a `mock-chaos` call drew.
    pub(crate) fn record_draw(&self, model: &str, kind: &'static str) {
        let mut by_model = self.lock();
        if let Some(counters) = by_model.get_mut(model) {
            *counters.drawn.entry(kind).or_default() += 1;
        }
    }

    /// Counts a chat request that asked for the flex tier.
    pub(crate) fn record_flex(&self, model: &str) {
        self.bump(model, |counters| &mut counters.flex);
    }

    /// Counts one call to the Files or Batch API.
    pub(crate) fn record_batch_api(&self, kind: &'static str) {
        let mut calls = self
            .batch_api
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *calls.entry(kind).or_default() += 1;
    }

    pub(crate) fn batch_api_calls(&self, kind: &str) -> u64 {
        let calls = self
            .batch_api
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        calls.get(kind).copied().unwrap_or(0)
    }

    pub(crate) fn flex_hits(&self, model: &str) -> u64 {
        self.lock().get(model).map_or(0, |counters| counters.flex)
    }

    fn record_abort(&self, model: &str) {
        self.bump(model, |counters| &mut counters.aborted);
    }

    fn record_finish(&self, model: &str) {
        self.bump(model, |counters| &mut counters.finished);
    }

    fn bump(&self, model: &str, field: impl Fn(&mut Counters) -> &mut u64) -> u64 {
        let mut by_model = self.lock();
        // Looking up by `&str` first keeps the hot path free of a key allocation.
        if let Some(counters) = by_model.get_mut(model) {
            let count = field(counters);
            *count += 1;
            return *count;
        }
        let mut counters = Counters::default();
        *field(&mut counters) = 1;
        by_model.insert(model.to_owned(), counters);
        1
    }

    pub(crate) fn hits(&self, model: &str) -> u64 {
        self.lock()
            .get(model)
            .map_or(0, |counters| counters.requests)
    }

    pub(crate) fn aborted(&self, model: &str) -> u64 {
        self.lock()
            .get(model)
            .map_or(0, |counters| counters.aborted)
    }

    pub(crate) fn finished(&self, model: &str) -> u64 {
        self.lock()
            .get(model)
            .map_or(0, |counters| counters.finished)
    }

    pub(crate) fn reset(&self) {
        self.lock().clear();
        self.batch_api
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let by_model = self.lock();
        let mut snapshot = StatsSnapshot::default();
        for (model, counters) in by_model.iter() {
            snapshot.requests.insert(model.clone(), counters.requests);
            snapshot.aborted.insert(model.clone(), counters.aborted);
            snapshot.finished.insert(model.clone(), counters.finished);
            if counters.flex > 0 {
                snapshot.flex.insert(model.clone(), counters.flex);
            }
            if !counters.drawn.is_empty() {
                let drawn = counters
                    .drawn
                    .iter()
                    .map(|(kind, count)| ((*kind).to_owned(), *count));
                snapshot.drawn.insert(model.clone(), drawn.collect());
            }
        }
        drop(by_model);
        let calls = self
            .batch_api
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        snapshot.batch_api = calls.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        snapshot
    }
}

/// Lives as long as a request's handling; dropped unfinished, it counts the request as aborted.
///
/// Hyper drops the handler future (or the response body stream) when the client disconnects,
/// so the drop is the only place that observes a client giving up on a hung or slow reply.
#[derive(Debug)]
pub(crate) struct CallGuard {
    stats: Arc<Stats>,
    model: String,
    finished: bool,
}

impl CallGuard {
    /// Counts the request and starts watching it; returns the guard and the 1-based call number.
    pub(crate) fn begin(stats: &Arc<Stats>, model: String) -> (Self, u64) {
        let call = stats.record_request(&model);
        let guard = Self {
            stats: Arc::clone(stats),
            model,
            finished: false,
        };
        (guard, call)
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    pub(crate) fn finish(&mut self) {
        if !self.finished {
            self.stats.record_finish(&self.model);
        }
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.stats.record_abort(&self.model);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_numbers_count_per_model() {
        let stats = Stats::default();
        assert_eq!(stats.record_request("a"), 1);
        assert_eq!(stats.record_request("a"), 2);
        assert_eq!(stats.record_request("b"), 1);
        assert_eq!(stats.hits("a"), 2);
        assert_eq!(stats.hits("unknown"), 0);
    }

    #[test]
    fn unfinished_guards_count_as_aborted() {
        let stats = Arc::new(Stats::default());
        let (mut finished, _) = CallGuard::begin(&stats, "m".to_owned());
        finished.finish();
        drop(finished);
        let (abandoned, _) = CallGuard::begin(&stats, "m".to_owned());
        drop(abandoned);
        assert_eq!(stats.hits("m"), 2);
        assert_eq!(stats.aborted("m"), 1);
        assert_eq!(stats.finished("m"), 1);
    }

    #[test]
    fn draws_count_per_model_and_kind() {
        let stats = Stats::default();
        stats.record_request("c");
        stats.record_draw("c", "429");
        stats.record_draw("c", "429");
        stats.record_draw("c", "ok");
        let drawn = &stats.snapshot().drawn["c"];
        assert_eq!(drawn["429"], 2);
        assert_eq!(drawn["ok"], 1);
    }

    #[test]
    fn reset_forgets_every_model() {
        let stats = Stats::default();
        stats.record_request("a");
        stats.reset();
        assert_eq!(stats.snapshot(), StatsSnapshot::default());
    }
}

//! Metric handles cached per label set: the hot path (every request, every upstream attempt)
//! finds its counter and histogram by a lookup that allocates nothing, instead of building
//! owned labels and asking the recorder's registry on every call (issue 18 measured that at
//! +6.8% CPU per sync request).

use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set once a recorder is installed ([`super::describe_metrics`]): until then, and in every
/// process that installs none, recording returns at once, and no handle that would stay a
/// no-op after a later install is cached.
static RECORDING: AtomicBool = AtomicBool::new(false);

pub(super) fn start_recording() {
    RECORDING.store(true, Ordering::Release);
}

pub(super) fn recording() -> bool {
    RECORDING.load(Ordering::Acquire)
}

/// Label sets kept per cache. Past it, handles are registered per call as without a cache, so
/// a label the client chooses (a model name) cannot grow memory beyond what the recorder holds.
const MAX_ENTRIES: usize = 4096;

/// Handles (`T`: the label values that are not the key, and the handles) grouped by one
/// string label, the one with many values (route, model); the few entries under a key are
/// searched in order.
pub(super) struct HandleCache<T> {
    entries: RwLock<Entries<T>>,
}

struct Entries<T> {
    by_key: HashMap<Box<str>, Vec<T>>,
    count: usize,
}

impl<T> HandleCache<T> {
    pub(super) fn new() -> Self {
        Self {
            entries: RwLock::new(Entries {
                by_key: HashMap::new(),
                count: 0,
            }),
        }
    }

    /// Runs `record` on the entry under `key` that `matches`, registering it with `register`
    /// the first time.
    pub(super) fn with(
        &self,
        key: &str,
        matches: impl Fn(&T) -> bool,
        register: impl FnOnce() -> T,
        record: impl FnOnce(&T),
    ) {
        if let Ok(entries) = self.entries.read()
            && let Some(found) = entries
                .by_key
                .get(key)
                .and_then(|list| list.iter().find(|t| matches(t)))
        {
            record(found);
            return;
        }
        let entry = register();
        record(&entry);
        // A poisoned lock only loses the cache: recording went on above.
        if let Ok(mut entries) = self.entries.write()
            && entries.count < MAX_ENTRIES
        {
            let list = entries.by_key.entry(key.into()).or_default();
            if !list.iter().any(&matches) {
                list.push(entry);
                entries.count += 1;
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.read().map_or(0, |e| e.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_registered_once_and_found_again() {
        let cache = HandleCache::<(u16, u32)>::new();
        let mut registered = 0;
        let mut seen = Vec::new();
        for status in [200, 200, 404, 200] {
            cache.with(
                "/v1/chat/completions",
                |(s, _)| *s == status,
                || {
                    registered += 1;
                    (status, registered)
                },
                |(_, n)| seen.push(*n),
            );
        }
        assert_eq!(registered, 2);
        assert_eq!(seen, [1, 1, 2, 1]);
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn past_its_bound_the_cache_registers_per_call_and_grows_no_more() {
        let cache = HandleCache::<usize>::new();
        for i in 0..MAX_ENTRIES + 10 {
            cache.with(&format!("model-{i}"), |_| true, || i, |_| {});
        }
        assert_eq!(cache.len(), MAX_ENTRIES);
        let mut registered = false;
        cache.with(
            "model-new",
            |_| true,
            || {
                registered = true;
                0
            },
            |_| {},
        );
        assert!(registered);
        assert_eq!(cache.len(), MAX_ENTRIES);
    }
}

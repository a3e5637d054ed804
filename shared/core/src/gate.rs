//! The process-wide per-model gate: caps lines in flight toward each model and pauses new starts
//! toward a model that is shedding load (a 429 with `retry-after`), the per-model breaker. Batch
//! lines wait for a slot; sync calls and job attempts take a free one without waiting, which is
//! how batch work yields to interactive traffic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

#[derive(Debug)]
pub struct ModelGate {
    per_model: usize,
    models: Mutex<HashMap<String, Lane>>,
}

/// One model's slots, and until when new starts toward it are paused.
type Lane = (Arc<Semaphore>, Option<Instant>);

impl ModelGate {
    pub fn new(per_model: usize) -> Self {
        Self {
            per_model: per_model.max(1),
            models: Mutex::new(HashMap::new()),
        }
    }

    /// The map of lanes. A panic while it was held cannot leave it half-written (each update is
    /// one insert or one field store), so a poisoned lock is recovered, not worked around: handing
    /// each caller a fresh semaphore instead would silently lift the per-model limit.
    fn models(&self) -> MutexGuard<'_, HashMap<String, Lane>> {
        self.models.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lane<'a>(&self, models: &'a mut HashMap<String, Lane>, model: &str) -> &'a mut Lane {
        models
            .entry(model.to_owned())
            .or_insert_with(|| (Arc::new(Semaphore::new(self.per_model)), None))
    }

    fn entry(&self, model: &str) -> Lane {
        let mut models = self.models();
        self.lane(&mut models, model).clone()
    }

    /// Waits out a pause, then for a free slot toward `model`.
    pub async fn enter(&self, model: &str) -> Option<OwnedSemaphorePermit> {
        let (semaphore, paused_until) = self.entry(model);
        if let Some(until) = paused_until.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
        semaphore.acquire_owned().await.ok()
    }

    /// Interactive work (a sync call, an async or scheduled job) takes a batch slot toward `model`
    /// if one is free, without ever waiting for one: while it runs, batches run one line fewer.
    pub fn interactive(&self, model: &str) -> Option<OwnedSemaphorePermit> {
        let (semaphore, _) = self.entry(model);
        semaphore.try_acquire_owned().ok()
    }

    /// The upstream asked to slow down: no new line toward `model` starts for `wait`.
    pub fn pause(&self, model: &str, wait: Duration) {
        let mut models = self.models();
        let lane = self.lane(&mut models, model);
        let until = Instant::now() + wait;
        if lane.1.is_none_or(|u| u < until) {
            lane.1 = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn interactive_calls_take_batch_slots_without_waiting_for_them() {
        let gate = ModelGate::new(2);
        let interactive = gate.interactive("m");
        assert!(interactive.is_some());
        let batch = gate.enter("m").await;
        assert!(batch.is_some());
        // Both slots are taken: another batch line waits, an interactive call does not.
        assert!(gate.interactive("m").is_none());
        let waiting = tokio::time::timeout(Duration::from_millis(50), gate.enter("m")).await;
        assert!(waiting.is_err(), "a third line must wait");
        drop(interactive);
        let admitted = tokio::time::timeout(Duration::from_millis(50), gate.enter("m")).await;
        assert!(
            admitted.is_ok(),
            "the slot came back when the interactive call ended"
        );
        assert!(
            gate.interactive("other").is_some(),
            "models have their own slots"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_model_starts_no_line_until_the_pause_ends() {
        let gate = ModelGate::new(4);
        gate.pause("m", Duration::from_secs(3));
        let started = Instant::now();
        let _slot = gate.enter("m").await;
        assert!(started.elapsed() >= Duration::from_secs(3));
    }

    #[test]
    fn a_poisoned_gate_keeps_its_per_model_limit() {
        let gate = Arc::new(ModelGate::new(1));
        let held = gate.interactive("m");
        assert!(held.is_some());
        let poisoner = Arc::clone(&gate);
        let panicked = std::thread::spawn(move || {
            let _models = poisoner.models.lock();
            panic!("poison the lock");
        })
        .join();
        assert!(panicked.is_err());
        assert!(gate.models.is_poisoned());
        assert!(
            gate.interactive("m").is_none(),
            "the one slot is still taken: the limit holds"
        );
        drop(held);
        assert!(gate.interactive("m").is_some());
    }
}

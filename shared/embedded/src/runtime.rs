//! The in-process runtime of `prism serve` on embedded storage: the core's queue consumer over
//! the SQLite queue, woken by enqueues (or when a delayed message comes due) instead of polling,
//! and a reconciler ticker. After shutdown, whatever lease is still held belongs to no one and is
//! released for the next start.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use prism_core::consumer::{ConsumerConfig, IdleWait, consume};
use prism_core::deps::Deps;
use prism_core::reconcile::reconcile_every;
use tokio_util::sync::CancellationToken;

use crate::jobs::SqliteJobStore;
use crate::queue::SqliteWorkQueue;

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub consumer: ConsumerConfig,
    pub reconcile_every: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            consumer: ConsumerConfig {
                concurrency: 64,
                batch: 256,
                visibility: Duration::from_secs(60),
                shutdown_grace: Duration::from_secs(30),
            },
            reconcile_every: Duration::from_secs(10),
        }
    }
}

/// Even with nothing queued the dispatcher looks again this often, so a message made visible by
/// another process (or a clock jump) is not missed for long.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

pub struct WorkerRuntime {
    deps: Deps,
    jobs: SqliteJobStore,
    queue: SqliteWorkQueue,
    config: RuntimeConfig,
}

impl WorkerRuntime {
    pub fn new(
        deps: Deps,
        jobs: SqliteJobStore,
        queue: SqliteWorkQueue,
        config: RuntimeConfig,
    ) -> Self {
        Self {
            deps,
            jobs,
            queue,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled, then drains as described in the module docs.
    pub async fn run(self, shutdown: CancellationToken) {
        let reconciler = tokio::spawn(reconcile_every(
            self.deps.clone(),
            self.config.reconcile_every,
            shutdown.clone(),
        ));
        let queue = self.queue.clone();
        let clock = Arc::clone(&self.deps.clock);
        let idle: IdleWait<'_> = Box::new(move || {
            let (queue, clock) = (queue.clone(), Arc::clone(&clock));
            async move {
                let wake = queue.wake();
                let wait = match queue.next_visible_at().await {
                    Ok(Some(at)) => clock.now().until(at).min(IDLE_RECHECK),
                    Ok(None) | Err(_) => IDLE_RECHECK,
                };
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
            }
            .boxed()
        });
        consume(
            &self.deps,
            Arc::new(self.queue.clone()),
            &self.config.consumer,
            idle,
            &shutdown,
        )
        .await;
        reconciler.abort();
        match self.jobs.reclaim_all_leases(self.deps.clock.now()).await {
            Ok(released) if released > 0 => tracing::info!(released, "released leases"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "could not release leases; the next start will"),
        }
    }
}

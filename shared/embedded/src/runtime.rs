//! The in-process runtime of `prism serve`: a dispatcher that receives from the embedded queue
//! when woken (or when a delayed message comes due), runs deliveries with bounded concurrency,
//! keeps their messages hidden while they run, and a reconciler ticker. Shutdown stops taking
//! work, lets running work finish for a grace period, then aborts it and releases its leases.

use std::sync::Arc;
use std::time::Duration;

use prism_core::ports::{Delivery, WorkQueue};
use prism_core::reconcile::reconcile;
use prism_core::service::Deps;
use prism_core::worker::{QueueAction, handle_delivery};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::jobs::{SqliteJobStore, SqliteWorkQueue};

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Deliveries run at once.
    pub concurrency: usize,
    /// How long a received message stays hidden before a heartbeat extends it.
    pub visibility: Duration,
    pub reconcile_every: Duration,
    /// How long running work may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            concurrency: 64,
            visibility: Duration::from_secs(60),
            reconcile_every: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Even with nothing queued the dispatcher looks again this often, so a message made visible by
/// another process (or a clock jump) is not missed for long.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

pub struct WorkerRuntime {
    deps: Deps,
    store: SqliteJobStore,
    queue: SqliteWorkQueue,
    config: RuntimeConfig,
}

impl WorkerRuntime {
    pub fn new(
        deps: Deps,
        store: SqliteJobStore,
        queue: SqliteWorkQueue,
        config: RuntimeConfig,
    ) -> Self {
        Self {
            deps,
            store,
            queue,
            config,
        }
    }

    /// Runs until `shutdown` is cancelled, then drains as described in the module docs.
    pub async fn run(self, shutdown: CancellationToken) {
        let reconciler = tokio::spawn(reconcile_loop(
            self.deps.clone(),
            self.config.reconcile_every,
            shutdown.clone(),
        ));
        let mut running = JoinSet::new();
        self.dispatch(&mut running, &shutdown).await;
        reconciler.abort();
        self.drain(running).await;
    }

    async fn dispatch(&self, running: &mut JoinSet<()>, shutdown: &CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let wake = self.queue.wake();
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = permits.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    permit = Arc::clone(&permits).acquire_owned() => drop(permit),
                }
                continue;
            }
            let deliveries = match self
                .queue
                .receive(free.min(256), self.config.visibility)
                .await
            {
                Ok(d) => d,
                Err(error) => {
                    tracing::error!(%error, "receive failed");
                    idle(shutdown, &wake, IDLE_RECHECK).await;
                    continue;
                }
            };
            if deliveries.is_empty() {
                let wait = self.time_to_next_message().await;
                idle(shutdown, &wake, wait).await;
                continue;
            }
            for delivery in deliveries {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                    return;
                };
                let (deps, queue, visibility) = (
                    self.deps.clone(),
                    self.queue.clone(),
                    self.config.visibility,
                );
                running.spawn(async move {
                    run_delivery(&deps, &queue, &delivery, visibility).await;
                    drop(permit);
                });
            }
        }
    }

    async fn time_to_next_message(&self) -> Duration {
        match self.queue.next_visible_at().await {
            Ok(Some(at)) => self.deps.clock.now().until(at).min(IDLE_RECHECK),
            Ok(None) | Err(_) => IDLE_RECHECK,
        }
    }

    async fn drain(&self, mut running: JoinSet<()>) {
        let in_flight = running.len();
        if in_flight > 0 {
            tracing::info!(in_flight, grace = ?self.config.shutdown_grace, "waiting for running jobs");
        }
        let finished = tokio::time::timeout(self.config.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tracing::warn!(
                remaining = running.len(),
                "grace period over; aborting running jobs"
            );
            running.abort_all();
            while running.join_next().await.is_some() {}
        }
        match self.store.reclaim_all_leases(self.deps.clock.now()).await {
            Ok(released) if released > 0 => tracing::info!(released, "released leases"),
            Ok(_) => {}
            Err(error) => tracing::error!(%error, "could not release leases; the next start will"),
        }
    }
}

async fn idle(shutdown: &CancellationToken, wake: &tokio::sync::Notify, wait: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = wake.notified() => {}
        _ = tokio::time::sleep(wait) => {}
    }
}

/// Runs one delivery, extending its message's visibility while it runs, then acknowledges it or
/// lets it reappear as the worker decided.
async fn run_delivery(
    deps: &Deps,
    queue: &SqliteWorkQueue,
    delivery: &Delivery,
    visibility: Duration,
) {
    let work = handle_delivery(deps, delivery, None);
    tokio::pin!(work);
    let mut heartbeat = tokio::time::interval(visibility / 2);
    heartbeat.tick().await;
    let action = loop {
        tokio::select! {
            action = &mut work => break action,
            _ = heartbeat.tick() => {
                if let Err(error) = queue.extend(&delivery.receipt, visibility).await {
                    tracing::warn!(%error, "could not extend message visibility");
                }
            }
        }
    };
    let settled = match action {
        QueueAction::Ack => queue.ack(&delivery.receipt).await,
        QueueAction::RetryAfter(wait) => queue.extend(&delivery.receipt, wait).await,
    };
    if let Err(error) = settled {
        tracing::warn!(%error, "could not settle a delivery; it will reappear");
    }
}

async fn reconcile_loop(deps: Deps, every: Duration, shutdown: CancellationToken) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(error) = reconcile(&deps).await {
                    tracing::warn!(%error, "reconcile pass failed");
                }
            }
        }
    }
}

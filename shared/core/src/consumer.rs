//! A long-lived queue consumer, the trigger of a process that runs its own workers (`prism serve`
//! on either backend): receives as many messages as it has free workers, runs each delivery on
//! its own task, and on shutdown stops receiving, lets running work finish for a grace period,
//! then stops the rest so their items are released for the next worker at once.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::deps::Deps;
use crate::dispatch::{QueueAction, dead_letter_item, run_delivery};
use crate::ports::WorkQueue;

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Deliveries run at once.
    pub concurrency: usize,
    /// Messages asked for per receive.
    pub batch: usize,
    /// How long a received message stays hidden; extended every half period while it runs.
    pub visibility: Duration,
    /// How long running work may finish after shutdown begins.
    pub shutdown_grace: Duration,
}

/// What the consumer does when a receive came back empty: wait for a wake-up (embedded) or
/// nothing at all (a long-polling receive already waited).
pub type IdleWait<'a> = Box<dyn Fn() -> BoxFuture<'a, ()> + Send + Sync + 'a>;

/// After the stop signal, how long released work gets to settle its messages.
const SETTLE: Duration = Duration::from_secs(5);
/// After a failed receive, wait this long before the next.
const RECEIVE_BACKOFF: Duration = Duration::from_secs(1);

pub async fn consume(
    deps: &Deps,
    queue: Arc<dyn WorkQueue>,
    config: &ConsumerConfig,
    idle: IdleWait<'_>,
    shutdown: &CancellationToken,
) {
    let stop = CancellationToken::new();
    let mut running = JoinSet::new();
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
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
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            received = queue.receive(free.min(config.batch.max(1)), config.visibility) => received,
        };
        let deliveries = match received {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "receive failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(RECEIVE_BACKOFF) => {}
                }
                continue;
            }
        };
        if deliveries.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = idle() => {}
            }
            continue;
        }
        for delivery in deliveries {
            let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
                break;
            };
            let (deps, queue, stop) = (deps.clone(), Arc::clone(&queue), stop.clone());
            let visibility = config.visibility;
            running.spawn(async move {
                run_delivery(&deps, queue.as_ref(), &delivery, visibility, &stop).await;
                drop(permit);
            });
        }
    }
    drain(running, config.shutdown_grace, &stop).await;
}

async fn drain(mut running: JoinSet<()>, grace: Duration, stop: &CancellationToken) {
    if running.is_empty() {
        return;
    }
    tracing::info!(
        in_flight = running.len(),
        ?grace,
        "waiting for running work"
    );
    let all_done = async |running: &mut JoinSet<()>| while running.join_next().await.is_some() {};
    if tokio::time::timeout(grace, all_done(&mut running))
        .await
        .is_ok()
    {
        return;
    }
    tracing::warn!(
        remaining = running.len(),
        "grace period over; releasing running work"
    );
    stop.cancel();
    if tokio::time::timeout(SETTLE, all_done(&mut running))
        .await
        .is_err()
    {
        running.abort_all();
        while running.join_next().await.is_some() {}
    }
}

/// Consumes a dead-letter queue of any stage: each dead letter goes to its stage's handling
/// ([`dead_letter_item`]: a job or a batch fails, a chunk's unfinished lines fail, a finalize is
/// tried again), then it is deleted.
pub async fn consume_dead_letters(
    deps: &Deps,
    queue: &dyn WorkQueue,
    visibility: Duration,
    shutdown: &CancellationToken,
) {
    while !shutdown.is_cancelled() {
        let received = tokio::select! {
            _ = shutdown.cancelled() => return,
            received = queue.receive(10, visibility) => received,
        };
        let deliveries = match received {
            Ok(d) => d,
            Err(error) => {
                tracing::error!(%error, "dead-letter receive failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(RECEIVE_BACKOFF) => continue,
                }
            }
        };
        for delivery in deliveries {
            match dead_letter_item(deps, &delivery.item).await {
                QueueAction::Ack => {
                    if let Err(error) = queue.ack(&delivery.receipt).await {
                        tracing::warn!(%error, "could not delete a handled dead letter");
                    }
                }
                QueueAction::RetryAfter(wait) => {
                    if let Err(error) = queue.extend(&delivery.receipt, wait).await {
                        tracing::warn!(%error, "could not delay a dead letter");
                    }
                }
            }
        }
    }
}

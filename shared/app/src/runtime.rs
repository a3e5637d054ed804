//! The AWS backend's worker runtime for a long-lived process (`prism serve --backend aws`, how a
//! team runs Prism's workers as containers when Lambda's limits do not suit them): one consumer
//! per stage queue and per dead-letter queue, as one function per queue on Lambda, and a
//! reconciler ticker, all until shutdown.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use prism_core::consumer::{ConsumerConfig, consume, consume_dead_letters};
use prism_core::reconcile::reconcile_every;
use tokio_util::sync::CancellationToken;

use crate::aws::AwsApp;

/// A receive on SQS waits this long for messages; short enough that shutdown is prompt. Pass it
/// to [`crate::aws::connect_aws`] for a process that runs [`run_workers`].
pub const SQS_RECEIVE_WAIT: Duration = Duration::from_secs(5);
/// SQS's most messages per receive.
const SQS_RECEIVE_MAX: usize = 10;
const DEAD_LETTER_VISIBILITY: Duration = Duration::from_secs(60);

/// Runs every worker loop of `app` until `shutdown` is cancelled, then waits for each to drain
/// (running work finishes within `workers.shutdown_grace`, the rest is handed back).
pub async fn run_workers(app: AwsApp, shutdown: CancellationToken) {
    let workers = &app.config.workers;
    let consumer = ConsumerConfig {
        concurrency: workers.concurrency,
        batch: SQS_RECEIVE_MAX,
        visibility: workers.visibility,
        shutdown_grace: workers.shutdown_grace,
    };
    let mut loops = Vec::new();
    for (_, queue) in app.backend.queues.iter() {
        let (deps, queue, shutdown) = (app.deps.clone(), queue.clone(), shutdown.clone());
        let consumer = consumer.clone();
        loops.push(tokio::spawn(async move {
            // The receive itself long-polls, so an empty one needs no extra wait.
            let idle = Box::new(|| async {}.boxed());
            consume(&deps, Arc::new(queue), &consumer, idle, &shutdown).await;
        }));
    }
    for (_, dlq) in app.backend.dead_letters.iter() {
        let (deps, dlq, shutdown) = (app.deps.clone(), dlq.clone(), shutdown.clone());
        loops.push(tokio::spawn(async move {
            consume_dead_letters(&deps, &dlq, DEAD_LETTER_VISIBILITY, &shutdown).await;
        }));
    }
    loops.push(tokio::spawn(reconcile_every(
        app.deps.clone(),
        workers.reconcile_every,
        shutdown.clone(),
    )));
    for task in loops {
        if let Err(error) = task.await {
            tracing::error!(%error, "a worker loop ended abnormally");
        }
    }
}

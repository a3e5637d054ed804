//! Planning a batch: stream its input once through the validator ([`crate::batches::input`]),
//! then fail the batch with every error found, or write its chunk records and queue one message
//! per chunk (and, for the lines of native providers, one look per group,
//! [`crate::batches::native::groups`]); and failing a batch whose planning message was
//! dead-lettered.

use std::time::Duration;

use futures::StreamExt;

use crate::batches::decisions::waits_only_on_native;
use crate::batches::input::{BatchError, PlanOutcome, Planner, PlannerLimits};
use crate::batches::native::groups;
use crate::batches::process::queue_finalize;
use crate::batches::{BatchErrors, BatchRef, BatchStatus, Chunk};
use crate::clock::Timestamp;
use crate::deps::Deps;
use crate::dispatch::QueueAction;
use crate::error::StoreError;
use crate::files::file_blob_key;
use crate::ports::WorkItem;

/// Planning: streams the input once through the validator; fails the batch with every error
/// found (the first ones and a count) or writes its chunk records and queues them.
#[tracing::instrument(skip_all, fields(tenant = %batch.tenant, batch_id = %batch.id))]
pub async fn plan_batch(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    let Some(current) = deps.batches.get(&batch.tenant, &batch.id).await? else {
        return Ok(QueueAction::Ack);
    };
    match current.status {
        BatchStatus::Validating => {}
        BatchStatus::InProgress => {
            // Planned by an earlier delivery that died before queueing every chunk or look.
            let chunks = deps.batches.chunks(batch).await?;
            queue_unfinished_chunks(deps, batch, &chunks, None).await?;
            groups::queue_lost_looks(deps, batch, &chunks).await?;
            return Ok(QueueAction::Ack);
        }
        BatchStatus::Cancelling => return queue_finalize(deps, batch).await,
        _ => return Ok(QueueAction::Ack),
    }
    let now = deps.clock.now();
    let key = file_blob_key(&batch.tenant, &current.input_file_id);
    let mut stream = match deps.blobs.get(&key).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::info!(%error, "input file unreadable; failing the batch");
            let errors = BatchErrors {
                data: vec![BatchError {
                    code: "invalid_request".into(),
                    message: format!(
                        "Cannot find file {}, or it is not accessible.",
                        current.input_file_id
                    ),
                    param: Some("input_file_id".into()),
                    line: None,
                }],
                total: 1,
            };
            deps.batches.fail(batch, &errors, now).await?;
            return Ok(QueueAction::Ack);
        }
    };
    let routes = |model: &str| deps.upstream.routes(model);
    let limits = PlannerLimits {
        lines_per_chunk: deps.batch_policy.lines_per_chunk,
        ..PlannerLimits::default()
    };
    let mut planner = Planner::new(current.endpoint, limits, &routes);
    while let Some(chunk) = stream.next().await {
        planner.feed(&chunk?);
    }
    match planner.finish() {
        PlanOutcome::Invalid {
            errors,
            total_errors,
        } => {
            tracing::info!(total_errors, "batch input invalid");
            let errors = BatchErrors {
                data: errors,
                total: total_errors,
            };
            deps.batches.fail(batch, &errors, deps.clock.now()).await?;
        }
        PlanOutcome::Valid {
            total,
            mut chunks,
            models,
        } => {
            let model = (models.len() == 1).then(|| models[0].as_str());
            // The native groups are recorded before the batch is planned, so a look never
            // finds a planned batch without its groups.
            let native =
                groups::prepare_groups(deps, batch, &current, &mut chunks, &models).await?;
            if deps
                .batches
                .plan(batch, &chunks, total, model, deps.clock.now())
                .await?
            {
                tracing::info!(total, chunks = chunks.len(), "batch planned");
                // A batch of several models counts its lines under `mixed`.
                crate::telemetry::count_jobs(
                    crate::telemetry::JobEvent::Submitted,
                    crate::telemetry::WorkKind::BatchLine,
                    model.unwrap_or("mixed"),
                    total,
                );
                for plan in &chunks {
                    deps.queue
                        .enqueue(
                            &WorkItem::RunChunk {
                                batch: batch.clone(),
                                chunk: plan.index,
                            },
                            Duration::ZERO,
                        )
                        .await?;
                }
                groups::queue_looks(deps, batch, native, Duration::ZERO).await?;
            } else {
                // Refused: the batch moved on (a cancel), or this very write landed on an
                // earlier try whose answer was lost. Either way the next delivery decides on a
                // fresh read; an acknowledgement here would leave a planned batch's chunks
                // unqueued until the reconciler found it idle.
                tracing::info!("plan write refused; deciding again on a fresh read");
                return Ok(QueueAction::RetryAfter(Duration::ZERO));
            }
        }
    }
    Ok(QueueAction::Ack)
}

/// Queues every chunk that is neither done nor held (and, with `idle_since`, untouched since),
/// except a chunk waiting only on its native groups' looks (`decisions::waits_only_on_native`).
/// A lost look is re-queued by `native::groups::queue_lost_looks` instead.
pub async fn queue_unfinished_chunks(
    deps: &Deps,
    batch: &BatchRef,
    chunks: &[Chunk],
    idle_since: Option<Timestamp>,
) -> Result<usize, StoreError> {
    let now = deps.clock.now();
    let mut queued = 0;
    for chunk in chunks {
        let idle = idle_since.is_none_or(|since| chunk.lease_expires_at.is_none_or(|t| t < since));
        if !chunk.done && !chunk.is_claimed(now) && idle && !waits_only_on_native(chunk) {
            deps.queue
                .enqueue(
                    &WorkItem::RunChunk {
                        batch: batch.clone(),
                        chunk: chunk.plan.index,
                    },
                    Duration::ZERO,
                )
                .await?;
            queued += 1;
        }
    }
    Ok(queued)
}

/// A planning message that kept failing: the batch fails with a file-level error.
pub async fn dead_plan(deps: &Deps, batch: &BatchRef) -> Result<QueueAction, StoreError> {
    let errors = BatchErrors {
        data: vec![BatchError {
            code: "processing_failed".into(),
            message: "The input file could not be validated after repeated attempts.".into(),
            param: None,
            line: None,
        }],
        total: 1,
    };
    if deps.batches.fail(batch, &errors, deps.clock.now()).await? {
        tracing::warn!(batch_id = %batch.id, "planning dead-lettered; batch failed");
    }
    Ok(QueueAction::Ack)
}

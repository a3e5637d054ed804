//! Batches: planning into chunks, chunk runs committing parts under their lease, resuming from
//! the cursor, finalizing (completed, cancelled, expired) and dead letters.

use std::time::Duration;

use futures::StreamExt;

use crate::support::*;

fn lines(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| batch_line(&format!("req-{i}"), &format!("prompt {i}")))
        .collect()
}

async fn create(world: &World, n: usize) -> BatchRef {
    let input = world.upload_batch_input(&lines(n)).await;
    let body = serde_json::json!({"input_file_id": input.id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"});
    let batch = create_batch(&world.deps, &tenant(), body.to_string().as_bytes())
        .await
        .unwrap();
    batch.batch_ref()
}

/// Creates a batch of `n` lines and runs its planning message.
pub(crate) async fn planned(world: &World, n: usize) -> BatchRef {
    let batch = create(world, n).await;
    let (item, action) = world.deliver_next().await.unwrap();
    assert_eq!(
        (item, action),
        (WorkItem::PlanBatch(batch.clone()), QueueAction::Ack)
    );
    batch
}

fn custom_ids(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["custom_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ids(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("req-{i}")).collect()
}

fn run_chunk(batch: &BatchRef, chunk: u32) -> WorkItem {
    WorkItem::RunChunk {
        batch: batch.clone(),
        chunk,
    }
}

#[tokio::test(start_paused = true)]
async fn a_batch_is_planned_into_chunks_and_each_chunk_is_queued() {
    let world = World::new();
    let batch = create(&world, 10).await;
    assert_eq!(world.queue.visible(), [WorkItem::PlanBatch(batch.clone())]);
    let expiry = world.scheduler.pending();
    assert_eq!(expiry.len(), 1, "the window's end is scheduled");
    assert_eq!(expiry[0].0, WorkItem::FinalizeBatch(batch.clone()));

    world.deliver_next().await.unwrap();

    let planned = world.batch(&batch).await;
    assert_eq!(planned.status, BatchStatus::InProgress);
    assert_eq!((planned.counts.total, planned.chunks), (10, 3));
    assert_eq!(planned.model.as_deref(), Some(MODEL));
    let chunks = world.deps.batches.chunks(&batch).await.unwrap();
    let sizes: Vec<u32> = chunks.iter().map(|c| c.plan.lines).collect();
    assert_eq!(sizes, [4, 4, 2]);
    assert_eq!(
        world.queue.visible(),
        [
            run_chunk(&batch, 0),
            run_chunk(&batch, 1),
            run_chunk(&batch, 2)
        ]
    );
    assert_eq!(world.upstream.call_count(), 0, "planning calls no model");
}

#[tokio::test(start_paused = true)]
async fn an_invalid_input_file_fails_the_batch_with_its_line_errors() {
    let world = World::new();
    let mut input = lines(2);
    input.push(r#"{"custom_id":"bad","method":"POST","url":"/v1/chat/completions","body":{"model":"nope","messages":[]}}"#.into());
    let file = world.upload_batch_input(&input).await;
    let body = serde_json::json!({"input_file_id": file.id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"});
    let batch = create_batch(&world.deps, &tenant(), body.to_string().as_bytes())
        .await
        .unwrap()
        .batch_ref();

    world.drain().await;

    let failed = world.batch(&batch).await;
    assert_eq!(failed.status, BatchStatus::Failed);
    let errors = failed.errors.expect("the validation errors are kept");
    assert!(errors.total >= 1);
    assert!(errors.data.iter().any(|e| e.line == Some(3)), "{errors:?}");
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_runs_to_completed_with_its_files_in_input_order_and_counts_and_usage() {
    let world = World::new();
    // Call 3 (line req-2) fails for good; call 5 (line req-4) is rate limited once.
    world.upstream.script([
        Reply::Echo,
        Reply::Echo,
        Reply::Status {
            status: 400,
            retry_after: None,
            code: Some("invalid_prompt"),
        },
        Reply::Echo,
        Reply::rate_limited(Duration::from_secs(2)),
    ]);
    let batch = create(&world, 6).await;

    world.drain().await;

    let done = world.batch(&batch).await;
    assert_eq!(done.status, BatchStatus::Completed);
    assert!(done.completed_at.is_some());
    assert_eq!(
        done.counts,
        RequestCounts {
            total: 6,
            completed: 5,
            failed: 1
        }
    );
    assert_eq!(
        (
            done.usage.input_tokens,
            done.usage.output_tokens,
            done.usage.total_tokens
        ),
        (15, 10, 25)
    );
    assert_eq!(world.upstream.call_count(), 7, "one retry after the 429");
    let output = world.file_lines(done.output_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&output), ids([0, 1, 3, 4, 5]));
    for line in &output {
        assert_eq!(line["response"]["status_code"], 200);
        let prompt = format!("prompt {}", &line["custom_id"].as_str().unwrap()[4..]);
        assert_eq!(
            line["response"]["body"]["choices"][0]["message"]["content"],
            format!("echo: {prompt}")
        );
    }
    let errors = world.file_lines(done.error_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&errors), ids([2]));
    assert_eq!(errors[0]["response"]["status_code"], 400);
    assert_eq!(
        errors[0]["response"]["body"]["error"]["code"],
        "invalid_prompt"
    );
    let output_file = get_file(
        &world.deps,
        &tenant(),
        done.output_file_id.as_ref().unwrap().as_str(),
    )
    .await
    .unwrap();
    assert_eq!(output_file.purpose, FilePurpose::BatchOutput);
}

#[tokio::test(start_paused = true)]
async fn a_chunk_commits_parts_as_it_goes_and_resumes_from_its_cursor_after_a_lost_claim() {
    let world = World::new();
    world.upstream.script([
        Reply::Echo,
        Reply::Echo,
        Reply::Hang(Hang::new(), Box::new(Reply::Echo)),
    ]);
    let batch = planned(&world, 4).await;
    let delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    assert_eq!(delivery.item, run_chunk(&batch, 0));
    let deps = world.deps.clone();
    let processor = tokio::spawn(async move { handle_delivery(&deps, &delivery, None).await });
    world.upstream.wait_for_calls(3).await;

    let chunk = world.deps.batches.chunks(&batch).await.unwrap().remove(0);
    assert_eq!(
        (chunk.cursor, chunk.parts.len()),
        (2, 2),
        "with one line slot, each finished line is committed at once rather than hold its slot"
    );
    assert_eq!(
        world.batch(&batch).await.counts.completed,
        2,
        "counts rise as parts land"
    );
    processor.abort();

    // The dead processor's claim still holds: another delivery backs off until it ends.
    world
        .deps
        .queue
        .enqueue(&run_chunk(&batch, 0), Duration::ZERO)
        .await
        .unwrap();
    let (_, busy) = world.deliver_next().await.unwrap();
    assert!(matches!(busy, QueueAction::RetryAfter(wait) if wait > Duration::ZERO));
    world
        .advance(world.deps.batch_policy.lease + Duration::from_secs(1))
        .await;
    world.drain().await;

    let prompts: Vec<String> = world.upstream.calls().iter().map(Call::prompt).collect();
    assert_eq!(
        prompts,
        ["prompt 0", "prompt 1", "prompt 2", "prompt 2", "prompt 3"],
        "committed lines are not run again"
    );
    assert_eq!(world.upstream.aborted(), 1);
    let chunk = world.deps.batches.chunks(&batch).await.unwrap().remove(0);
    assert!(chunk.done);
    assert_eq!((chunk.cursor, chunk.parts.len()), (4, 4));
    assert_ne!(chunk.parts[0].key, chunk.parts[1].key);
    let done = world.batch(&batch).await;
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!((done.counts.completed, done.counts.failed), (4, 0));
    let output = world.file_lines(done.output_file_id.as_ref().unwrap());
    assert_eq!(
        custom_ids(&output),
        ids(0..4),
        "each line once, in input order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_batch_finalizes_cancelled_with_its_unrun_lines_as_errors() {
    let world = World::new();
    let batch = planned(&world, 8).await;
    let (item, _) = world.deliver_next().await.unwrap();
    assert_eq!(item, run_chunk(&batch, 0));

    let cancelling = cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelling.status, BatchStatus::Cancelling);
    let again = cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(
        again.status,
        BatchStatus::Cancelling,
        "a repeated cancel is accepted"
    );
    world.drain().await;

    let cancelled = world.batch(&batch).await;
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    assert!(cancelled.cancelled_at.is_some());
    assert_eq!(
        cancelled.counts,
        RequestCounts {
            total: 8,
            completed: 4,
            failed: 4
        }
    );
    assert_eq!(world.upstream.call_count(), 4, "the second chunk never ran");
    let output = world.file_lines(cancelled.output_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&output), ids(0..4));
    let errors = world.file_lines(cancelled.error_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&errors), ids(4..8));
    assert!(
        errors
            .iter()
            .all(|l| l["error"]["code"] == "batch_cancelled")
    );
    let after = cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(
        after.status,
        BatchStatus::Cancelled,
        "cancelling a cancelled batch is accepted"
    );
}

/// On DynamoDB a plan stores its chunk records before its transition, which a cancel while
/// validating refuses (the memory store does the same): those chunks never ran and are no lines
/// of the batch, which ends cancelled with nothing counted and no files.
#[tokio::test(start_paused = true)]
async fn a_batch_cancelled_while_validating_ends_with_no_lines_even_when_its_plan_stored_chunks() {
    let world = World::new();
    let input = world.upload_batch_input(&lines(8)).await;
    let body = serde_json::json!({"input_file_id": input.id, "endpoint": "/v1/chat/completions",
        "completion_window": "24h"});
    let batch = create_batch(&world.deps, &tenant(), body.to_string().as_bytes())
        .await
        .unwrap()
        .batch_ref();
    let cancelling = cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelling.status, BatchStatus::Cancelling);
    // The planning that read `validating` just before the cancel writes now: its chunk record
    // is stored, its transition refused.
    let whole_input = prism_core::batches::input::ChunkPlan {
        index: 0,
        start: 0,
        end: input.bytes,
        lines: 8,
        native: None,
    };
    let now = world.deps.clock.now();
    let planned = world
        .deps
        .batches
        .plan(&batch, &[whole_input], 8, Some("gpt-test"), now)
        .await
        .unwrap();
    assert!(!planned, "a cancelled batch is not planned");
    world.drain().await;

    let cancelled = world.batch(&batch).await;
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    assert_eq!(cancelled.counts, RequestCounts::default());
    assert_eq!(cancelled.output_file_id, None);
    assert_eq!(cancelled.error_file_id, None);
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_cancelled_mid_call_keeps_each_line_once_and_ends_cancelled() {
    let world = World::new();
    let hang = Hang::new();
    world.upstream.script([
        Reply::Echo,
        Reply::Hang(hang.clone(), Box::new(Reply::Echo)),
    ]);
    let batch = planned(&world, 4).await;
    let delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    let deps = world.deps.clone();
    let processor = tokio::spawn(async move { handle_delivery(&deps, &delivery, None).await });
    world.upstream.wait_for_calls(2).await;

    cancel_batch(&world.deps, &tenant(), batch.id.as_str())
        .await
        .unwrap();
    hang.release();
    assert_eq!(processor.await.unwrap(), QueueAction::Ack);
    // The finalizer waits for the chunk's claim to be let go, then assembles.
    world.drain().await;
    world.advance(CANCEL_GRACE).await;
    world.drain().await;

    let cancelled = world.batch(&batch).await;
    assert_eq!(cancelled.status, BatchStatus::Cancelled);
    let counts = cancelled.counts;
    assert_eq!((counts.total, counts.completed + counts.failed), (4, 4));
    let mut seen = cancelled
        .output_file_id
        .iter()
        .chain(&cancelled.error_file_id)
        .flat_map(|file| custom_ids(&world.file_lines(file)))
        .collect::<Vec<_>>();
    seen.sort();
    assert_eq!(seen, ids(0..4), "every line is in exactly one file");
    assert_eq!(
        world.upstream.call_count(),
        2,
        "no line started after the cancel"
    );
}

#[tokio::test(start_paused = true)]
async fn a_batch_not_done_by_the_end_of_its_window_finalizes_expired() {
    let world = World::new();
    let batch = planned(&world, 3).await;
    let window = world.deps.batch_policy.completion_window;

    world.advance(window).await;
    world.drain().await;

    let expired = world.batch(&batch).await;
    assert_eq!(expired.status, BatchStatus::Expired);
    assert_eq!((expired.counts.completed, expired.counts.failed), (0, 3));
    assert_eq!(
        expired.output_file_id, None,
        "nothing ran, so no output file"
    );
    let errors = world.file_lines(expired.error_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&errors), ids(0..3));
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_expired"));
    assert_eq!(world.upstream.call_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_planning_message_received_too_often_fails_the_batch() {
    let world = World::new();
    let batch = create(&world, 2).await;
    let mut delivery = world.queue.receive(1, VISIBILITY).await.unwrap().remove(0);
    delivery.receive_count = world.deps.work_policy.max_receives + 1;

    assert_eq!(
        handle_delivery(&world.deps, &delivery, None).await,
        QueueAction::Ack
    );

    let failed = world.batch(&batch).await;
    assert_eq!(failed.status, BatchStatus::Failed);
    let errors = failed.errors.unwrap();
    assert_eq!(errors.data[0].code, "processing_failed");
}

#[tokio::test(start_paused = true)]
async fn a_dead_lettered_chunk_writes_its_unfinished_lines_as_failed_and_the_batch_completes() {
    let world = World::new();
    let batch = planned(&world, 8).await;
    world.deliver_next().await.unwrap();

    let action = dead_letter_item(&world.deps, &run_chunk(&batch, 1)).await;
    assert_eq!(action, QueueAction::Ack);
    world.drain().await;

    let done = world.batch(&batch).await;
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!((done.counts.completed, done.counts.failed), (4, 4));
    let errors = world.file_lines(done.error_file_id.as_ref().unwrap());
    assert_eq!(custom_ids(&errors), ids(4..8));
    assert!(
        errors
            .iter()
            .all(|l| l["error"]["code"] == "processing_failed")
    );
    assert_eq!(
        world.upstream.call_count(),
        4,
        "the dead chunk's lines never ran"
    );
}

#[tokio::test(start_paused = true)]
async fn the_reconciler_requeues_planning_that_was_never_triggered() {
    let world = World::new();
    world.queue.refuse_enqueues(1);
    let batch = create(&world, 2).await;
    assert!(
        world.queue.items().is_empty(),
        "the planning message was lost"
    );

    world
        .advance(world.deps.work_policy.stranded_after + Duration::from_secs(1))
        .await;
    let report = reconcile(&world.deps).await.unwrap();
    assert_eq!(report.batches, 1);
    world.drain().await;

    assert_eq!(world.batch(&batch).await.status, BatchStatus::Completed);
}

/// The blob store with every read of a batch part taking `PART_READ` (a finalize far longer
/// than its lease, as a large batch's is), recording the key of every upload and the largest
/// piece any upload handed it.
struct SlowPartReads {
    blobs: std::sync::Arc<MemoryBlobStore>,
    puts: std::sync::Mutex<Vec<String>>,
    largest_piece: std::sync::Mutex<usize>,
}

impl SlowPartReads {
    fn puts_of(&self, key: &str) -> usize {
        let puts = self
            .puts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        puts.iter().filter(|k| k.as_str() == key).count()
    }
}

const PART_READ: Duration = Duration::from_secs(100);

#[async_trait::async_trait]
impl BlobStore for SlowPartReads {
    async fn put_stream(
        &self,
        key: &str,
        body: prism_core::files::UploadStream<'_>,
    ) -> Result<u64, UploadError> {
        self.puts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(key.to_owned());
        let body = body
            .inspect(|piece| {
                if let Ok(piece) = piece {
                    let mut largest = self
                        .largest_piece
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    *largest = (*largest).max(piece.len());
                }
            })
            .boxed();
        self.blobs.put_stream(key, body).await
    }

    async fn get(
        &self,
        key: &str,
    ) -> Result<prism_core::ports::BlobStream, prism_core::StoreError> {
        if key.contains("/chunks/") {
            tokio::time::sleep(PART_READ).await;
        }
        self.blobs.get(key).await
    }

    async fn get_range(
        &self,
        key: &str,
        start: u64,
        end: u64,
    ) -> Result<bytes::Bytes, prism_core::StoreError> {
        self.blobs.get_range(key, start, end).await
    }

    async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, prism_core::StoreError> {
        self.blobs.presigned_get(key, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<(), prism_core::StoreError> {
        self.blobs.delete(key).await
    }
}

#[tokio::test(start_paused = true)]
async fn a_finalizer_slower_than_its_lease_renews_it_and_is_never_taken_over() {
    let mut world = World::new();
    let blobs = std::sync::Arc::new(SlowPartReads {
        blobs: world.blobs.clone(),
        puts: Default::default(),
        largest_piece: Default::default(),
    });
    world.deps.blobs = blobs.clone();
    assert!(PART_READ > world.deps.batch_policy.lease);
    let batch = create(&world, 12).await;
    *blobs.largest_piece.lock().unwrap() = 0;
    // A rival finalizer, as every redelivered finalize message is: it looks every few seconds
    // while the batch is finalizing, and would take it over once the lease lapsed.
    let rival = {
        let (deps, batch) = (world.deps.clone(), batch.clone());
        tokio::spawn(async move {
            for _ in 0..1000 {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let seen = deps.batches.get(&batch.tenant, &batch.id).await.unwrap();
                match seen.map(|b| b.status) {
                    Some(BatchStatus::Finalizing) => {}
                    Some(status) if !status.is_terminal() => continue,
                    _ => break,
                }
                let _looked = prism_core::batches::finalize::try_finalize(&deps, &batch)
                    .await
                    .unwrap();
            }
        })
    };

    world.drain().await;
    rival.await.unwrap();

    let done = world.batch(&batch).await;
    assert_eq!(done.status, BatchStatus::Completed);
    let output_file = done.output_file_id.unwrap();
    let output_key = file_blob_key(&tenant(), &output_file);
    assert_eq!(
        blobs.puts_of(&output_key),
        1,
        "the output was assembled once"
    );
    let output = world.file_lines(&output_file);
    assert_eq!(custom_ids(&output), ids(0..12));
    // The file went to the blob store a chunk (4 lines) at a time, never whole.
    let whole = world.blobs.bytes(&output_key).unwrap().len();
    let largest = *blobs.largest_piece.lock().unwrap();
    assert!(
        largest > 0 && largest * 2 < whole,
        "largest piece {largest} bytes of {whole}"
    );
    let took = done.completed_at.unwrap().0 - done.finalizing_at.unwrap().0;
    assert!(
        Duration::from_millis(took.unsigned_abs()) > world.deps.batch_policy.lease,
        "the finalize outlasted its first lease ({took} ms)"
    );
}

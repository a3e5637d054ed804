//! The batch stages driven directly over the SQLite adapters and the mock upstream: concurrent
//! processors of one chunk, dead-lettered chunks, cancel racing a dead letter.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prism_core::batches::finalize::try_finalize;
use prism_core::batches::process::run_chunk;
use prism_core::batches::service::{BatchPolicy, cancel_batch, create_batch};
use prism_core::batches::{BatchRef, BatchStatus};
use prism_core::deps::Deps;
use prism_core::deps::Policies;
use prism_core::dispatch::{QueueAction, dead_letter_item, handle_delivery};
use prism_core::files::FilePurpose;
use prism_core::files::service::{register_upload, store_upload};
use prism_core::ports::{WorkItem, WorkQueue};
use prism_core::{SystemClock, TenantId};
use prism_embedded::{Database, EmbeddedBackend, SqliteWorkQueue};
use prism_testkit::{MockUpstream, spawn_mock_upstream};
use prism_upstream::{HttpUpstream, ProviderConfig, UpstreamOptions};
use tokio_util::sync::CancellationToken;

struct Harness {
    deps: Deps,
    queue: SqliteWorkQueue,
    mock: MockUpstream,
    _dir: tempfile::TempDir,
}

async fn harness(batches: BatchPolicy) -> Harness {
    let mock = spawn_mock_upstream("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = Database::open(&dir.path().join("b.sqlite3")).unwrap();
    let upstream = HttpUpstream::new(
        vec![ProviderConfig {
            name: "mock".into(),
            base_url: mock.base_url(),
            api_key: None,
            models: vec!["*".into()],
            batch: Default::default(),
            flex_fallback: Default::default(),
        }],
        UpstreamOptions::default(),
    )
    .unwrap();
    let backend = EmbeddedBackend::new(
        &db,
        dir.path(),
        Arc::new(SystemClock),
        Arc::new(upstream),
        Policies {
            batches,
            ..Policies::default()
        },
    );
    Harness {
        deps: backend.deps,
        queue: backend.queue,
        mock,
        _dir: dir,
    }
}

fn alpha() -> TenantId {
    TenantId::parse("alpha").unwrap()
}

/// Uploads `lines` request lines toward `model` and creates a batch over them.
async fn batch_of(h: &Harness, lines: usize, model: &str) -> BatchRef {
    let text: String = (0..lines)
        .map(|i| {
            format!(
                "{{\"custom_id\":\"r{i}\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"m{i}\"}}]}}}}\n"
            )
        })
        .collect();
    let body = futures::stream::once(async move { Ok(Bytes::from(text)) }).boxed();
    let pending = store_upload(&h.deps, &alpha(), body).await.unwrap();
    let file = register_upload(
        &h.deps,
        pending,
        "in.jsonl".into(),
        FilePurpose::Batch,
        None,
    )
    .await
    .unwrap();
    let request = format!(
        r#"{{"input_file_id":"{}","endpoint":"/v1/chat/completions","completion_window":"24h"}}"#,
        file.id
    );
    let batch = create_batch(&h.deps, &alpha(), request.as_bytes())
        .await
        .unwrap();
    batch.batch_ref()
}

/// Runs every visible queue message (planning included) until the queue holds only `keep`.
async fn drain(h: &Harness, keep: impl Fn(&WorkItem) -> bool) {
    loop {
        let deliveries = h.queue.receive(32, Duration::from_secs(60)).await.unwrap();
        let runnable: Vec<_> = deliveries.into_iter().filter(|d| !keep(&d.item)).collect();
        if runnable.is_empty() {
            return;
        }
        for delivery in runnable {
            match handle_delivery(&h.deps, &delivery, None).await {
                QueueAction::Ack => h.queue.ack(&delivery.receipt).await.unwrap(),
                QueueAction::RetryAfter(_) => h.queue.ack(&delivery.receipt).await.unwrap(),
            }
        }
    }
}

async fn output_ids(h: &Harness, batch: &BatchRef) -> (Vec<String>, Vec<(String, String)>) {
    let done = h
        .deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    let read = |id: Option<prism_core::FileId>| async move {
        let Some(id) = id else { return String::new() };
        let key = prism_core::files::file_blob_key(&alpha(), &id);
        let mut stream = h.deps.blobs.get(&key).await.unwrap();
        let mut text = Vec::new();
        while let Some(chunk) = stream.next().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(text).unwrap()
    };
    let outputs = read(done.output_file_id.clone())
        .await
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["custom_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let errors = read(done.error_file_id.clone())
        .await
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["custom_id"].as_str().unwrap().to_owned(),
                v["error"]["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    (outputs, errors)
}

fn policy() -> BatchPolicy {
    BatchPolicy {
        lines_per_chunk: 10,
        checkpoint_lines: 3,
        ..BatchPolicy::default()
    }
}

#[tokio::test]
async fn two_processors_given_the_same_chunk_write_one_result_per_line() {
    let h = harness(policy()).await;
    let batch = batch_of(&h, 10, "mock-slow-100-twin").await;
    // Plan only: keep the chunk message for the two processors below.
    drain(&h, |item| matches!(item, WorkItem::RunChunk { .. })).await;
    let stop = CancellationToken::new();
    let (a, b) = tokio::join!(
        run_chunk(&h.deps, &batch, 0, None, &stop),
        run_chunk(&h.deps, &batch, 0, None, &stop)
    );
    let actions = [a.unwrap(), b.unwrap()];
    assert!(actions.contains(&QueueAction::Ack));
    assert!(
        actions
            .iter()
            .any(|x| matches!(x, QueueAction::RetryAfter(_))),
        "the second found the chunk busy: {actions:?}"
    );
    drain(&h, |_| false).await;
    let done = h
        .deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!(
        (done.counts.total, done.counts.completed, done.counts.failed),
        (10, 10, 0)
    );
    let (outputs, errors) = output_ids(&h, &batch).await;
    assert_eq!(
        outputs,
        (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>()
    );
    assert!(errors.is_empty());
    assert_eq!(h.mock.hits("mock-slow-100-twin"), 10, "each line ran once");
}

#[tokio::test]
async fn a_dead_lettered_chunk_writes_its_unfinished_lines_as_failed() {
    let h = harness(policy()).await;
    let batch = batch_of(&h, 20, "gpt-dead").await;
    drain(&h, |item| {
        matches!(item, WorkItem::RunChunk { chunk: 1, .. })
    })
    .await;
    // Chunk 1's message kept failing and reached the dead-letter queue.
    let action = dead_letter_item(
        &h.deps,
        &WorkItem::RunChunk {
            batch: batch.clone(),
            chunk: 1,
        },
    )
    .await;
    assert_eq!(action, QueueAction::Ack);
    drain(&h, |item| {
        matches!(item, WorkItem::RunChunk { chunk: 1, .. })
    })
    .await;
    let done = h
        .deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!((done.counts.completed, done.counts.failed), (10, 10));
    let (outputs, errors) = output_ids(&h, &batch).await;
    assert_eq!(outputs.len(), 10);
    assert_eq!(errors.len(), 10);
    assert!(errors.iter().all(|(_, code)| code == "processing_failed"));
    assert_eq!(h.mock.hits("gpt-dead"), 10);
}

#[tokio::test]
async fn cancel_with_a_chunk_in_the_dead_letter_queue_still_ends_cancelled_with_every_line() {
    let h = harness(policy()).await;
    let batch = batch_of(&h, 30, "gpt-cancel-dlq").await;
    // Chunk 0 finishes; chunk 1 is dead-lettered; chunk 2 is still waiting when the cancel comes.
    drain(&h, |item| {
        matches!(item, WorkItem::RunChunk { chunk: 1 | 2, .. })
    })
    .await;
    let cancelled = cancel_batch(&h.deps, &alpha(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(cancelled.status, BatchStatus::Cancelling);
    let action = dead_letter_item(
        &h.deps,
        &WorkItem::RunChunk {
            batch: batch.clone(),
            chunk: 1,
        },
    )
    .await;
    assert_eq!(action, QueueAction::Ack);
    drain(&h, |_| false).await;
    assert_eq!(
        try_finalize(&h.deps, &batch).await.unwrap(),
        QueueAction::Ack
    );
    let done = h
        .deps
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Cancelled);
    let (outputs, errors) = output_ids(&h, &batch).await;
    let mut all: Vec<String> = outputs
        .iter()
        .cloned()
        .chain(errors.iter().map(|(id, _)| id.clone()))
        .collect();
    all.sort();
    let mut expected: Vec<String> = (0..30).map(|i| format!("r{i}")).collect();
    expected.sort();
    assert_eq!(all, expected, "every line exactly once");
    assert_eq!(outputs.len(), 10);
    assert!(errors.iter().all(|(_, code)| code == "batch_cancelled"));
    assert_eq!((done.counts.completed, done.counts.failed), (10, 20));
    assert_eq!(h.mock.hits("gpt-cancel-dlq"), 10);
    let again = cancel_batch(&h.deps, &alpha(), batch.id.as_str())
        .await
        .unwrap();
    assert_eq!(again.status, BatchStatus::Cancelled);
}

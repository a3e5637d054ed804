//! The `BatchStore` contract: planning and failing while validating, withdrawal, listing and
//! the active count; the helpers every topic of it shares. Chunk claims, cancel, finalize and
//! the provider's counts are submodules of their own.

use super::*;

mod cancel;
mod claims;
mod finalize;
mod native;

pub use cancel::*;
pub use claims::*;
pub use finalize::*;
pub use native::*;

async fn new_batch(p: &Ports, ids: &IdGenerator, owner: &str, window: Duration) -> BatchRef {
    let now = p.clock.now();
    let batch = NewBatch {
        id: ids.batch_id(now),
        tenant: tenant(owner),
        input_file_id: ids.file_id(now),
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        completion_window: "24h".into(),
        metadata: Some([("k".to_owned(), "v".to_owned())].into()),
        output_expires_after: None,
        created_at: now,
        expires_at: now.plus(window),
    };
    p.batches.create(&batch).await.unwrap();
    batch.batch_ref()
}

fn plans(n: u32) -> Vec<ChunkPlan> {
    (0..n)
        .map(|i| ChunkPlan {
            index: i,
            start: u64::from(i) * 100,
            end: u64::from(i + 1) * 100,
            lines: 10,
            // Each form the record takes: native lines, none, and none recorded.
            native: match i % 3 {
                0 => Some("1-3,7".to_owned()),
                1 => Some(String::new()),
                _ => None,
            },
        })
        .collect()
}

fn part(key: &str, completed: u32, failed: u32) -> Part {
    Part {
        key: key.into(),
        lines: completed + failed,
        completed,
        failed,
        usage: Usage {
            input_tokens: 3,
            cached_tokens: 0,
            output_tokens: 4,
            reasoning_tokens: 0,
            total_tokens: 7,
        },
        done: format!("0-{}", completed + failed - 1),
    }
}

/// A batch open for `window`, planned as `chunks` chunks of 10 lines: what the claim, cancel,
/// finalize and provider-count cases start from.
async fn planned_batch(p: &Ports, ids: &IdGenerator, chunks: u32, window: Duration) -> BatchRef {
    let batch = new_batch(p, ids, "alpha", window).await;
    p.batches
        .plan(
            &batch,
            &plans(chunks),
            u64::from(chunks) * 10,
            None,
            p.clock.now(),
        )
        .await
        .unwrap();
    batch
}

/// A finalizer's lease to complete the batch, held by `token` until `until`, with new file ids.
fn finalize_lease(ids: &IdGenerator, token: &str, until: Timestamp) -> FinalizeLease {
    FinalizeLease {
        token: token.into(),
        expires_at: until,
        outcome: BatchOutcome::Completed,
        output_file_id: ids.file_id(until),
        error_file_id: ids.file_id(until),
    }
}

async fn claim(p: &Ports, batch: &BatchRef, chunk: u32, token: &str) -> ChunkClaim {
    claim_for(p, batch, chunk, token, ClaimPurpose::Run).await
}

async fn claim_for(
    p: &Ports,
    batch: &BatchRef,
    chunk: u32,
    token: &str,
    purpose: ClaimPurpose,
) -> ChunkClaim {
    let now = p.clock.now();
    p.batches
        .claim_chunk(batch, chunk, &lease(token, now.plus(HOUR)), purpose, now)
        .await
        .unwrap()
}

async fn counts_of(p: &Ports, batch: &BatchRef) -> RequestCounts {
    p.batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap()
        .counts
}

pub async fn batch_plan_and_fail_happen_only_while_validating(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.status, BatchStatus::Validating);
    assert_eq!(got.counts, RequestCounts::default());
    assert_eq!(
        got.metadata,
        Some([("k".to_owned(), "v".to_owned())].into())
    );
    assert!(
        p.batches
            .get(&tenant("beta"), &batch.id)
            .await
            .unwrap()
            .is_none()
    );
    let now = p.clock.now();
    assert!(
        p.batches
            .plan(&batch, &plans(3), 30, Some("m"), now)
            .await
            .unwrap()
    );
    assert!(
        !p.batches
            .plan(&batch, &plans(3), 30, Some("m"), now)
            .await
            .unwrap(),
        "planned once"
    );
    let errors = BatchErrors {
        data: vec![BatchError {
            code: "invalid_json_line".into(),
            message: "x".into(),
            param: None,
            line: Some(2),
        }],
        total: 1,
    };
    assert!(
        !p.batches.fail(&batch, &errors, now).await.unwrap(),
        "no longer validating"
    );
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (got.status, got.counts.total, got.chunks),
        (BatchStatus::InProgress, 30, 3)
    );
    assert_eq!(got.model.as_deref(), Some("m"));
    let chunks = p.batches.chunks(&batch).await.unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.plan.clone()).collect::<Vec<_>>(),
        plans(3)
    );
    assert!(
        chunks
            .iter()
            .all(|c| !c.done && c.cursor == 0 && c.parts.is_empty())
    );

    let other = new_batch(&p, &ids, "alpha", HOUR).await;
    assert!(p.batches.fail(&other, &errors, now).await.unwrap());
    let failed = p
        .batches
        .get(&other.tenant, &other.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(failed.status, BatchStatus::Failed);
    assert_eq!(failed.errors, Some(errors));
    assert!(failed.failed_at.is_some());
}

pub async fn batches_list_newest_first_and_count_only_unfinished(p: Ports) {
    let ids = IdGenerator::new();
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(new_batch(&p, &ids, "alpha", HOUR).await);
    }
    new_batch(&p, &ids, "beta", HOUR).await;
    let now = p.clock.now();
    let errors = BatchErrors {
        data: Vec::new(),
        total: 0,
    };
    p.batches.fail(&made[0], &errors, now).await.unwrap();
    let page = p.batches.list(&tenant("alpha"), 2, None).await.unwrap();
    let listed: Vec<_> = page.items.iter().map(|b| b.id.clone()).collect();
    assert_eq!(listed, vec![made[2].id.clone(), made[1].id.clone()]);
    assert!(page.has_more);
    let rest = p
        .batches
        .list(&tenant("alpha"), 2, Some(&made[1].id))
        .await
        .unwrap();
    assert_eq!(rest.items.len(), 1);
    assert!(!rest.has_more);
    assert_eq!(p.batches.count_active(&tenant("alpha")).await.unwrap(), 2);
    let unfinished = p.batches.unfinished(100).await.unwrap();
    assert!(unfinished.contains(&made[1]) && unfinished.contains(&made[2]));
    assert!(!unfinished.contains(&made[0]));
}

pub async fn only_a_validating_batch_can_be_withdrawn_and_only_by_its_tenant(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let other_tenant = BatchRef {
        tenant: tenant("beta"),
        id: batch.id.clone(),
    };
    assert!(!p.batches.withdraw(&other_tenant).await.unwrap());
    assert!(p.batches.withdraw(&batch).await.unwrap());
    assert!(
        p.batches
            .get(&batch.tenant, &batch.id)
            .await
            .unwrap()
            .is_none()
    );
    let listed = p.batches.list(&batch.tenant, 10, None).await.unwrap();
    assert!(listed.items.iter().all(|b| b.id != batch.id));
    assert!(!p.batches.withdraw(&batch).await.unwrap(), "withdrawn once");

    let planned = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    assert!(
        p.batches
            .plan(&planned, &plans(1), 10, Some("m"), now)
            .await
            .unwrap()
    );
    assert!(!p.batches.withdraw(&planned).await.unwrap());
    assert!(
        p.batches
            .get(&planned.tenant, &planned.id)
            .await
            .unwrap()
            .is_some()
    );
}

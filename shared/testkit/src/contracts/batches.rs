//! The `BatchStore` contract: planning, chunk claims and checkpoints, cancel, finalize,
//! listing and the active count.

use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};

use super::*;

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

pub async fn chunk_claims_fence_checkpoints_and_counts_add_up(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(2), 20, None, now)
        .await
        .unwrap();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    assert!(matches!(
        claim(&p, &batch, 0, "b").await,
        ChunkClaim::Busy { .. }
    ));
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "b", &part("p0", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p1", 4, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("p2", 5, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Running
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "b", until).await.unwrap(),
        ChunkWrite::Refused
    );
    let running = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (running.counts.completed, running.counts.failed),
        (9, 1),
        "counts rise as parts land"
    );
    assert_eq!(running.usage.total_tokens, 14);
    let chunk = &p.batches.chunks(&batch).await.unwrap()[0];
    assert_eq!(chunk.cursor, 10);
    assert_eq!(
        chunk
            .parts
            .iter()
            .map(|x| x.key.as_str())
            .collect::<Vec<_>>(),
        ["p1", "p2"]
    );
    assert!(!p.batches.complete_chunk(&batch, 0, "b").await.unwrap());
    assert!(p.batches.complete_chunk(&batch, 0, "a").await.unwrap());
    assert!(
        !p.batches.complete_chunk(&batch, 0, "a").await.unwrap(),
        "counted once"
    );
    assert_eq!(claim(&p, &batch, 0, "c").await, ChunkClaim::Done);
    let got = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.chunks_done, 1);

    // A released chunk is claimable at once, and resumes from its cursor.
    assert!(matches!(
        claim(&p, &batch, 1, "d").await,
        ChunkClaim::Claimed { .. }
    ));
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p3", 3, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Running
    );
    assert!(p.batches.release_chunk(&batch, 1, "d").await.unwrap());
    match claim(&p, &batch, 1, "e").await {
        ChunkClaim::Claimed { chunk, .. } => assert_eq!(chunk.cursor, 3),
        other => panic!("expected a claim, got {other:?}"),
    }
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "d", &part("p4", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
}

/// A cancelling batch takes no new claims to run lines, but its holders' finished lines still
/// land (they are paid for) and every write tells them to stop; a claim to collect a provider
/// batch's finished lines is still taken and its commit lands the same way; once the cancel's
/// finalizer claims the batch, nothing more lands and no claim is taken.
pub async fn a_cancelling_batch_keeps_its_holders_results_and_takes_no_more_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(2), 20, None, now)
        .await
        .unwrap();
    assert!(matches!(
        claim(&p, &batch, 0, "a").await,
        ChunkClaim::Claimed { .. }
    ));
    match p
        .batches
        .request_cancel(&batch.tenant, &batch.id, now)
        .await
        .unwrap()
    {
        BatchCancelOutcome::Accepted(b) => assert_eq!(b.status, BatchStatus::Cancelling),
        other => panic!("expected accepted, got {other:?}"),
    }
    assert!(matches!(
        p.batches
            .request_cancel(&batch.tenant, &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::Accepted(_)
    ));
    assert_eq!(
        p.batches
            .request_cancel(&tenant("beta"), &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::NotFound
    );
    let until = now.plus(HOUR);
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("late", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches.renew_chunk(&batch, 0, "a", until).await.unwrap(),
        ChunkWrite::Stopping
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "x", &part("stranger", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused
    );
    assert_eq!(claim(&p, &batch, 1, "b").await, ChunkClaim::Closed);
    assert!(matches!(
        claim_for(&p, &batch, 1, "n", ClaimPurpose::Collect).await,
        ChunkClaim::Claimed { .. }
    ));
    assert_eq!(
        p.batches
            .checkpoint(&batch, 1, "n", &part("collected", 2, 1), until, now)
            .await
            .unwrap(),
        ChunkWrite::Stopping
    );
    assert!(p.batches.release_chunk(&batch, 1, "n").await.unwrap());
    let chunks = p.batches.chunks(&batch).await.unwrap();
    assert!(
        chunks[0].is_claimed(now),
        "the claim stays until its holder lets go"
    );
    assert_eq!(chunks[0].cursor, 1, "the finished line was kept");
    let counted = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counted.counts.completed, 1 + 2);
    assert_eq!(chunks[1].cursor, 3, "the collected lines were kept");
    assert!(p.batches.release_chunk(&batch, 0, "a").await.unwrap());
    let finalize = FinalizeLease {
        token: "f".into(),
        expires_at: now.plus(HOUR),
        outcome: BatchOutcome::Cancelled,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize, now)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        p.batches
            .checkpoint(&batch, 0, "a", &part("after", 1, 0), until, now)
            .await
            .unwrap(),
        ChunkWrite::Refused,
        "nothing lands once the finalizer may have read the parts"
    );
    assert_eq!(
        claim_for(&p, &batch, 1, "m", ClaimPurpose::Collect).await,
        ChunkClaim::Closed
    );
}

/// A finalizer assembling a large batch outlasts one lease: renewing keeps a take-over out, and
/// only the holder renews.
pub async fn a_finalizer_renews_its_lease_only_while_it_holds_it(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", 4 * HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    let finalize = |token: &str, until: Timestamp| FinalizeLease {
        token: token.into(),
        expires_at: until,
        outcome: BatchOutcome::Completed,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    let first = finalize("f1", now.plus(Duration::from_secs(1)));
    p.batches
        .claim_finalize(&batch, &first, now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !p.batches
            .renew_finalize(&batch, "someone-else", now.plus(HOUR))
            .await
            .unwrap(),
        "only the holder renews"
    );
    // Short times: on the emulator the contract clock is the system's, and advancing sleeps.
    let renewed_until = now.plus(Duration::from_secs(3));
    assert!(
        p.batches
            .renew_finalize(&batch, "f1", renewed_until)
            .await
            .unwrap()
    );
    // Past the first lease's end, the renewed one keeps a take-over out.
    p.clock.advance(Duration::from_millis(1500)).await;
    let later = p.clock.now();
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize("f2", later.plus(HOUR)), later)
            .await
            .unwrap()
            .is_none(),
        "a renewed lease is not taken over"
    );
    let held = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap()
        .finalize
        .unwrap();
    assert_eq!(
        held,
        FinalizeLease {
            expires_at: renewed_until,
            ..first.clone()
        },
        "the renewal keeps the outcome and file ids"
    );
    // Once the renewed lease ends too, another finalizer takes over and the first renews no more.
    p.clock.advance(Duration::from_millis(2000)).await;
    let after = p.clock.now();
    let taken = p
        .batches
        .claim_finalize(&batch, &finalize("f3", after.plus(HOUR)), after)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        taken.finalize.map(|f| (f.token, f.output_file_id)),
        Some(("f3".to_owned(), first.output_file_id))
    );
    assert!(
        !p.batches
            .renew_finalize(&batch, "f1", after.plus(2 * HOUR))
            .await
            .unwrap(),
        "a finalizer taken over renews no more"
    );
}

pub async fn finalize_has_one_winner_and_finish_needs_its_token(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    let finalize = |token: &str, until: Timestamp| FinalizeLease {
        token: token.into(),
        expires_at: until,
        outcome: BatchOutcome::Completed,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    let first = finalize("f1", now.plus(Duration::from_secs(1)));
    let claimed = p
        .batches
        .claim_finalize(&batch, &first, now)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.status, BatchStatus::Finalizing);
    assert_eq!(
        claimed.finalize.as_ref().map(|f| f.token.as_str()),
        Some("f1")
    );
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize("f2", now.plus(HOUR)), now)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        p.batches
            .request_cancel(&batch.tenant, &batch.id, now)
            .await
            .unwrap(),
        BatchCancelOutcome::Finished(_)
    ));
    // The first finalizer's lease ends: a take-over keeps its outcome and file ids.
    p.clock.advance(Duration::from_millis(1500)).await;
    let later = p.clock.now();
    let taken = p
        .batches
        .claim_finalize(&batch, &finalize("f3", later.plus(HOUR)), later)
        .await
        .unwrap()
        .unwrap();
    let held = taken.finalize.unwrap();
    assert_eq!(held.token, "f3");
    assert_eq!(held.output_file_id, first.output_file_id);
    let result = BatchResult {
        outcome: BatchOutcome::Completed,
        counts: RequestCounts {
            total: 10,
            completed: 9,
            failed: 1,
        },
        usage: Usage::default(),
        usage_by_model: {
            let mut sum = prism_core::pricing::UsageByModel::default();
            let usage = Usage {
                input_tokens: 3,
                total_tokens: 3,
                ..Usage::default()
            };
            sum.add("m-a", prism_core::pricing::Tier::Standard, &usage);
            sum.add("m-b", prism_core::pricing::Tier::Flex, &usage);
            sum
        },
        output_file_id: Some(first.output_file_id.clone()),
        error_file_id: None,
        counted: Vec::new(),
    };
    let result = BatchResult {
        counted: UsageCount::of_finished_batch(&result.usage_by_model, later),
        ..result
    };
    let today = Day::of(later);
    assert!(
        !p.batches
            .finish(&batch, "f1", &result, later)
            .await
            .unwrap(),
        "stale finalizer"
    );
    assert!(
        p.batches
            .finish(&batch, "f3", &result, later)
            .await
            .unwrap()
    );
    let done = p
        .batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, BatchStatus::Completed);
    assert_eq!(done.counts, result.counts);
    assert_eq!(done.usage_by_model, result.usage_by_model);
    assert_eq!(done.output_file_id, Some(first.output_file_id));
    assert!(done.completed_at.is_some() && done.finalize.is_none());
    assert!(
        !p.batches
            .finish(&batch, "f3", &result, later)
            .await
            .unwrap()
    );
    // The end counted its usage once: the refused finishes added nothing.
    let mut counted: Vec<(String, &str, u64, u64)> = p
        .batches
        .usage_counts(&batch.tenant, today, today)
        .await
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!((c.day, c.kind), (today, UsageKind::Batch));
            (
                c.model.clone(),
                c.tier.as_str(),
                c.requests,
                c.usage.total_tokens,
            )
        })
        .collect();
    counted.sort();
    assert_eq!(
        counted,
        [
            ("m-a".to_owned(), "standard", 1, 3),
            ("m-b".to_owned(), "flex", 1, 3)
        ]
    );
    assert!(
        p.batches
            .usage_counts(&tenant("beta"), today, today)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        p.batches
            .claim_finalize(&batch, &finalize("f4", later.plus(HOUR)), later)
            .await
            .unwrap()
            .is_none()
    );
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

pub async fn an_expired_batch_takes_no_claims(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", Duration::from_secs(1)).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    p.clock.advance(Duration::from_millis(1500)).await;
    assert_eq!(claim(&p, &batch, 0, "late").await, ChunkClaim::Closed);
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

pub async fn provider_counts_show_in_request_counts_until_the_batch_finishes(p: Ports) {
    let ids = IdGenerator::new();
    let batch = new_batch(&p, &ids, "alpha", HOUR).await;
    let now = p.clock.now();
    p.batches
        .plan(&batch, &plans(1), 10, None, now)
        .await
        .unwrap();
    assert!(matches!(
        claim(&p, &batch, 0, "t").await,
        ChunkClaim::Claimed { .. }
    ));
    p.batches
        .checkpoint(&batch, 0, "t", &part("p0", 2, 1), now.plus(HOUR), now)
        .await
        .unwrap();
    let reported = |completed, failed| RequestCounts {
        total: 6,
        completed,
        failed,
    };
    // Each group's latest report replaces its previous one and adds to the committed lines.
    assert!(
        p.batches
            .record_provider_counts(&batch, 0, &reported(1, 0))
            .await
            .unwrap()
    );
    assert!(
        p.batches
            .record_provider_counts(&batch, 1, &reported(2, 1))
            .await
            .unwrap()
    );
    assert!(
        p.batches
            .record_provider_counts(&batch, 0, &reported(3, 0))
            .await
            .unwrap()
    );
    let live = counts_of(&p, &batch).await;
    assert_eq!(
        (live.total, live.completed, live.failed),
        (10, 2 + 3 + 2, 1 + 1)
    );
    // Another tenant's batch of the same id is not this one.
    let stranger = BatchRef {
        tenant: tenant("beta"),
        id: batch.id.clone(),
    };
    assert!(
        !p.batches
            .record_provider_counts(&stranger, 0, &reported(1, 0))
            .await
            .unwrap()
    );
    // A finished batch shows its final counts alone and takes no more reports.
    let lease = FinalizeLease {
        token: "f".into(),
        expires_at: now.plus(HOUR),
        outcome: BatchOutcome::Completed,
        output_file_id: ids.file_id(now),
        error_file_id: ids.file_id(now),
    };
    p.batches
        .claim_finalize(&batch, &lease, now)
        .await
        .unwrap()
        .unwrap();
    let result = BatchResult {
        outcome: BatchOutcome::Completed,
        counts: reported(5, 1),
        usage: Usage::default(),
        usage_by_model: prism_core::pricing::UsageByModel::default(),
        output_file_id: Some(lease.output_file_id.clone()),
        error_file_id: None,
        counted: Vec::new(),
    };
    assert!(p.batches.finish(&batch, "f", &result, now).await.unwrap());
    assert_eq!(counts_of(&p, &batch).await, reported(5, 1));
    assert!(
        !p.batches
            .record_provider_counts(&batch, 0, &reported(6, 0))
            .await
            .unwrap()
    );
}

async fn counts_of(p: &Ports, batch: &BatchRef) -> RequestCounts {
    p.batches
        .get(&batch.tenant, &batch.id)
        .await
        .unwrap()
        .unwrap()
        .counts
}

//! The `BatchStore` contract on finalizing: one winner, a lease only its holder renews, a
//! take-over that keeps the outcome and file ids, and a finish that needs the token and
//! counts the batch's usage once.

use prism_core::usage::UsageKind;
use prism_core::usage::counters::{Day, UsageCount};

use super::*;

/// A finalizer assembling a large batch outlasts one lease: renewing keeps a take-over out, and
/// only the holder renews.
pub async fn a_finalizer_renews_its_lease_only_while_it_holds_it(p: Ports) {
    let ids = IdGenerator::new();
    let batch = planned_batch(&p, &ids, 1, 4 * HOUR).await;
    let now = p.clock.now();
    let finalize = |token: &str, until: Timestamp| finalize_lease(&ids, token, until);
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
    let batch = planned_batch(&p, &ids, 1, HOUR).await;
    let now = p.clock.now();
    let finalize = |token: &str, until: Timestamp| finalize_lease(&ids, token, until);
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

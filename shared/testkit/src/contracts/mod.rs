//! Contract suites for the storage ports: one module per port, every case run against every
//! adapter (SQLite, DynamoDB/SQS/S3/EventBridge, core's in-memory fakes), so every backend has
//! the same semantics. The shared fixtures live here; an adapter crate calls
//! `port_contract!(fresh)` in a test file, where `fresh()` returns new, empty [`Ports`].
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use prism_core::batches::input::{BatchError, ChunkPlan};
use prism_core::batches::{
    BatchCancelOutcome, BatchErrors, BatchOutcome, BatchRef, BatchStatus, ChunkClaim, ChunkWrite,
    ClaimPurpose, FinalizeLease, NewBatch, Part, RequestCounts, Usage,
};
use prism_core::files::{FileListQuery, FilePurpose, FileRecord, ListOrder, UploadError};
use prism_core::ids::IdGenerator;
use prism_core::jobs::{Finish, JobRef, NewJob};
use prism_core::keys::{hash_key, mint_key};
use prism_core::list::ListQuery;
use prism_core::ports::{
    BatchResult, BatchStore, BlobStore, CancelOutcome, ClaimOutcome, CreateOutcome, FileStore,
    IdempotencyClaim, JobStore, KeyStore, Lease, Scheduler, WorkItem, WorkQueue,
};
use prism_core::{FileId, JobError, JobId, JobKind, JobStatus, TenantId, Timestamp};

pub use crate::clock::TestClock;

/// The adapters under test, sharing one clock.
pub struct Ports {
    pub jobs: Arc<dyn JobStore>,
    pub queue: Arc<dyn WorkQueue>,
    pub keys: Arc<dyn KeyStore>,
    pub scheduler: Arc<dyn Scheduler>,
    pub schedules: Arc<dyn ScheduleTime>,
    pub files: Arc<dyn FileStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub batches: Arc<dyn BatchStore>,
    pub clock: Arc<dyn TestClock>,
}

/// Lets time pass for the scheduler without waiting for it: a manual clock advances; on the
/// emulator, the pump fires what falls due within the span.
#[async_trait]
pub trait ScheduleTime: Send + Sync {
    async fn pass(&self, by: Duration);
}

#[async_trait]
impl<C: TestClock> ScheduleTime for C {
    async fn pass(&self, by: Duration) {
        self.advance(by).await;
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn lease(token: &str, until: Timestamp) -> Lease {
    Lease {
        token: token.to_owned(),
        expires_at: until,
    }
}

async fn new_job(p: &Ports, ids: &IdGenerator, owner: &str) -> NewJob {
    let now = p.clock.now();
    let job = NewJob {
        id: ids.job_id(now),
        tenant: tenant(owner),
        kind: JobKind::Async,
        endpoint: prism_core::ApiEndpoint::ChatCompletions,
        model: "gpt-contract".into(),
        request: Bytes::from_static(br#"{"model":"gpt-contract","messages":[]}"#),
        created_at: now,
        scheduled_at: None,
        scheduled_job_id: None,
        metadata: None,
    };
    let outcome = p.jobs.create(&job, None).await.unwrap();
    let CreateOutcome::Created { triggered } = outcome else {
        panic!("expected a create, got {outcome:?}");
    };
    if triggered {
        // Adapters whose create also queues the job: consume that first delivery, so every
        // case starts from a stored job with no message waiting, on every adapter.
        let first = p.queue.receive(1, Duration::ZERO).await.unwrap();
        assert_eq!(first.len(), 1, "a triggered create must leave one message");
        p.queue.ack(&first[0].receipt).await.unwrap();
    }
    job
}

mod batches;
mod blobs;
mod files;
mod jobs;
mod keys;
mod queue;
mod recurring;
mod responses;
mod scheduler;
mod uploads;
mod webhooks;

pub use batches::*;
pub use blobs::*;
pub use files::*;
pub use jobs::*;
pub use keys::*;
pub use queue::*;
pub use recurring::*;
pub use responses::*;
pub use scheduler::*;
pub use uploads::*;
pub use webhooks::*;

/// Expands to one `#[tokio::test]` per contract case, each on fresh ports from `$fresh().await`.
#[macro_export]
macro_rules! port_contract {
    ($fresh:path) => {
        $crate::port_contract!(@cases $fresh;
            created_job_is_pending_and_visible_to_its_tenant_only,
            a_job_keeps_the_endpoint_it_calls_through_claim_and_finish,
            idempotency_claim_replays_within_its_tenant,
            a_live_lease_keeps_other_claimants_out_and_fences_stale_writes,
            a_released_lease_can_be_claimed_at_once,
            finished_jobs_expire_at_their_retention,
            a_finish_counts_its_usage_once_and_the_purge_keeps_the_count,
            cancel_moves_unfinished_jobs_once_and_refuses_finished_ones,
            dead_letter_fails_only_unfinished_jobs,
            list_is_newest_first_with_cursor_and_filter,
            reconciler_finds_old_pending_jobs_and_ended_leases,
            queue_delivers_at_least_once_with_visibility,
            delayed_enqueue_is_invisible_until_due,
            keys_are_found_by_hash_until_revoked,
            claim_waits_for_a_scheduled_job_to_fall_due,
            scheduled_jobs_list_apart_from_async_ones_with_their_metadata,
            scheduler_delivers_at_its_time_once_and_never_after_unschedule,
            file_records_belong_to_their_tenant_until_deleted_or_expired,
            file_list_pages_either_way_with_a_purpose_filter,
            blobs_stream_in_and_out_and_a_failed_upload_leaves_nothing,
            batch_plan_and_fail_happen_only_while_validating,
            only_a_validating_batch_can_be_withdrawn_and_only_by_its_tenant,
            chunk_claims_fence_checkpoints_and_counts_add_up,
            a_cancelling_batch_keeps_its_holders_results_and_takes_no_more_claims,
            finalize_has_one_winner_and_finish_needs_its_token,
            a_finalizer_renews_its_lease_only_while_it_holds_it,
            batches_list_newest_first_and_count_only_unfinished,
            an_expired_batch_takes_no_claims,
            provider_counts_show_in_request_counts_until_the_batch_finishes,
            response_events_append_under_the_lease_and_read_back_in_order,
        );
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                $crate::contracts::$case($fresh().await).await;
            }
        )*
    };
}

//! The work queue: what a message names, its deliveries, and at-least-once receipt.

use std::time::Duration;

use async_trait::async_trait;

use crate::batches::BatchRef;
use crate::clock::Timestamp;
use crate::error::StoreError;
use crate::jobs::JobRef;
use crate::recurring::RecurringRef;
use crate::webhooks::EventRef;

use super::jobs::{ClaimOutcome, Lease};

/// What a queue message names. Messages carry ids, never payloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WorkItem {
    Job(JobRef),
    /// Validate a batch's input and plan its chunks.
    PlanBatch(BatchRef),
    /// Run one chunk of a batch.
    RunChunk {
        batch: BatchRef,
        chunk: u32,
    },
    /// Assemble a batch's output once its chunks are done (or it is cancelled or expired).
    FinalizeBatch(BatchRef),
    /// Deliver one webhook event to the endpoints that receive it.
    Webhook(EventRef),
    /// One look at a native group of a batch (one provider batch per (provider, model)): submit
    /// it if not yet, record the provider's counts, collect it once it ended; then queue the next
    /// look with a delay. Holds no lease between looks.
    PollNative {
        batch: BatchRef,
        group: u32,
    },
    /// One firing of a recurring schedule, for the fire time `at` (what EventBridge Scheduler
    /// puts in `<aws.scheduler.scheduled-time>`).
    FireSchedule {
        schedule: RecurringRef,
        at: Timestamp,
    },
}

/// Opaque handle of one receipt of a message; acknowledging needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub item: WorkItem,
    pub receipt: Receipt,
    /// 1 on first delivery.
    pub receive_count: u32,
    /// The trace of whoever queued it, when traces are exported.
    pub trace: Option<crate::trace_context::TraceContext>,
    /// A job's claim made in the same write as the receive (the embedded queue): the worker
    /// starts from it instead of claiming the job with a write of its own. `None`: not claimed.
    /// Boxed: a claimed job is large beside the rest of a delivery.
    pub claim: Option<Box<ReceivedClaim>>,
}

/// What a queue that claims on receive did: the claim of the delivered job under `lease`, as
/// [`JobStore::claim`](super::JobStore::claim) would have answered it at `at`.
#[derive(Clone, PartialEq)]
pub struct ReceivedClaim {
    pub lease: Lease,
    pub at: Timestamp,
    pub outcome: ClaimOutcome,
    /// The job's request body, read in the same write when the claim took the job and the body
    /// is small: the worker then needs no read of its own before calling the upstream. `None`:
    /// read it from the store.
    pub request: Option<bytes::Bytes>,
}

/// The body is a prompt: a debug print of a delivery shows its size, never its content.
impl std::fmt::Debug for ReceivedClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedClaim")
            .field("lease", &self.lease)
            .field("at", &self.at)
            .field("outcome", &self.outcome)
            .field(
                "request_bytes",
                &self.request.as_ref().map(bytes::Bytes::len),
            )
            .finish()
    }
}

/// At-least-once delivery with a visibility timeout, as SQS gives it.
#[async_trait]
pub trait WorkQueue: Send + Sync {
    async fn enqueue(&self, item: &WorkItem, delay: Duration) -> Result<(), StoreError>;

    /// Up to `max` visible messages, each hidden for `visibility` from now.
    async fn receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, StoreError>;

    /// Deletes the message. A stale receipt is ignored.
    async fn ack(&self, receipt: &Receipt) -> Result<(), StoreError>;

    /// Hides the message for `visibility` from now (0 makes it visible at once).
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<(), StoreError>;
}

//! Unit tests of the batch state machine's decisions, one rule per test, by topic; the
//! fixtures they share are here.

use std::sync::LazyLock;

use super::*;
use crate::batches::input::ChunkPlan;
use crate::batches::{BatchOutcome, NewBatch};
use crate::ids::{BatchId, FileId, IdGenerator, TenantId};

const NOW: Timestamp = Timestamp(1_000);

static IDS: LazyLock<(BatchId, FileId)> = LazyLock::new(|| {
    let ids = IdGenerator::new();
    (ids.batch_id(Timestamp(0)), ids.file_id(Timestamp(0)))
});

fn batch(status: BatchStatus) -> Batch {
    let new = NewBatch {
        id: IDS.0.clone(),
        tenant: TenantId::parse("acme").unwrap(),
        input_file_id: IDS.1.clone(),
        endpoint: crate::ApiEndpoint::ChatCompletions,
        completion_window: crate::batches::COMPLETION_WINDOW.into(),
        metadata: None,
        output_expires_after: None,
        created_at: Timestamp(0),
        expires_at: Timestamp(10_000),
    };
    Batch {
        status,
        ..Batch::from_new(&new)
    }
}

fn chunk() -> Chunk {
    Chunk::new(ChunkPlan {
        index: 0,
        start: 0,
        end: 10,
        lines: 2,
        native: None,
    })
}

fn lease(token: &str, expires_at: Timestamp) -> FinalizeLease {
    FinalizeLease {
        token: token.into(),
        expires_at,
        outcome: BatchOutcome::Completed,
        output_file_id: IDS.1.clone(),
        error_file_id: IDS.1.clone(),
    }
}

fn chunk_lease() -> Lease {
    Lease {
        token: "u".into(),
        expires_at: Timestamp(3_000),
    }
}

fn refusal(batch: Option<Batch>, chunk: Option<Chunk>) -> Option<ChunkClaim> {
    chunk_claim(batch, chunk, &chunk_lease(), ClaimPurpose::Run, NOW).err()
}

fn done_chunk() -> Chunk {
    Chunk {
        done: true,
        ..chunk()
    }
}

mod cancel;
mod chunks;
mod finalize;
mod native;

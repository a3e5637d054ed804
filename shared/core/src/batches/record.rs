//! The batch record: what creating a batch stores, what the stores return, its counts and
//! errors, the finalizer's lease, and what a cancel found.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{BatchOutcome, BatchStatus, Usage};
use crate::batches::input::BatchError;
use crate::clock::Timestamp;
use crate::endpoint::ApiEndpoint;
use crate::ids::{BatchId, FileId, TenantId};
use crate::metadata::Metadata;
use crate::pricing::UsageByModel;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

/// Validation errors: the first ones and how many there were in all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchErrors {
    pub data: Vec<BatchError>,
    pub total: u64,
}

/// Names a batch everywhere outside the HTTP layer; the owner is part of every key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchRef {
    pub tenant: TenantId,
    pub id: BatchId,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewBatch {
    pub id: BatchId,
    pub tenant: TenantId,
    pub input_file_id: FileId,
    pub endpoint: ApiEndpoint,
    pub completion_window: String,
    pub metadata: Option<Metadata>,
    pub output_expires_after: Option<Duration>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl NewBatch {
    pub fn batch_ref(&self) -> BatchRef {
        BatchRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: BatchId,
    pub tenant: TenantId,
    pub input_file_id: FileId,
    pub endpoint: ApiEndpoint,
    pub completion_window: String,
    pub metadata: Option<Metadata>,
    pub output_expires_after: Option<Duration>,
    pub status: BatchStatus,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub in_progress_at: Option<Timestamp>,
    pub finalizing_at: Option<Timestamp>,
    pub completed_at: Option<Timestamp>,
    pub failed_at: Option<Timestamp>,
    pub expired_at: Option<Timestamp>,
    pub cancelling_at: Option<Timestamp>,
    pub cancelled_at: Option<Timestamp>,
    pub counts: RequestCounts,
    pub usage: Usage,
    /// Once finished: `usage` per model and tier, summed from the output file.
    pub usage_by_model: UsageByModel,
    pub errors: Option<BatchErrors>,
    pub output_file_id: Option<FileId>,
    pub error_file_id: Option<FileId>,
    /// The model when every line uses the same one.
    pub model: Option<String>,
    pub chunks: u32,
    pub chunks_done: u32,
    /// While finalizing: the outcome being assembled and the finalizer's lease.
    pub finalize: Option<FinalizeLease>,
}

impl Batch {
    pub fn batch_ref(&self) -> BatchRef {
        BatchRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }

    pub fn from_new(new: &NewBatch) -> Self {
        Batch {
            id: new.id.clone(),
            tenant: new.tenant.clone(),
            input_file_id: new.input_file_id.clone(),
            endpoint: new.endpoint,
            completion_window: new.completion_window.clone(),
            metadata: new.metadata.clone(),
            output_expires_after: new.output_expires_after,
            status: BatchStatus::Validating,
            created_at: new.created_at,
            expires_at: new.expires_at,
            in_progress_at: None,
            finalizing_at: None,
            completed_at: None,
            failed_at: None,
            expired_at: None,
            cancelling_at: None,
            cancelled_at: None,
            counts: RequestCounts::default(),
            usage: Usage::default(),
            usage_by_model: UsageByModel::default(),
            errors: None,
            output_file_id: None,
            error_file_id: None,
            model: None,
            chunks: 0,
            chunks_done: 0,
            finalize: None,
        }
    }
}

/// The finalizer's hold: the outcome it assembles and the ids its files will get, fixed at the
/// claim so a finalizer that takes over writes the very same files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalizeLease {
    pub token: String,
    pub expires_at: Timestamp,
    #[serde(with = "outcome_name")]
    pub outcome: BatchOutcome,
    pub output_file_id: FileId,
    pub error_file_id: FileId,
}

mod outcome_name {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::BatchOutcome;

    pub fn serialize<S: Serializer>(outcome: &BatchOutcome, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(outcome.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BatchOutcome, D::Error> {
        let name = String::deserialize(d)?;
        BatchOutcome::parse(&name).ok_or_else(|| serde::de::Error::custom("unknown outcome"))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchCancelOutcome {
    /// Now `cancelling` (or already `cancelling` / `cancelled`): answered 200.
    Accepted(Batch),
    /// Completed, failed or expired: too late.
    Finished(Batch),
    NotFound,
}

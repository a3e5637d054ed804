//! The objects Prism answers, as far as the commands read them; every other field is kept in
//! `other`, so `--json` prints the object whole.

use prism_core::batches::BatchStatus;
use prism_core::jobs::JobStatus;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

impl RequestCounts {
    /// Lines with a result, either way.
    pub fn done(&self) -> u64 {
        self.completed + self.failed
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Batch {
    pub id: String,
    pub status: String,
    pub input_file_id: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub request_counts: RequestCounts,
    pub created_at: i64,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Batch {
    /// Whether the batch has ended (`completed`, `failed`, `expired` or `cancelled`); an unknown
    /// status counts as not ended.
    pub fn is_finished(&self) -> bool {
        BatchStatus::parse(&self.status).is_some_and(BatchStatus::is_terminal)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileObject {
    pub id: String,
    pub filename: String,
    pub bytes: u64,
    pub purpose: String,
    pub created_at: i64,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// An async job (`async.job`) or a scheduled one (`scheduled.job`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub object: String,
    pub status: String,
    #[serde(default)]
    pub model: Option<String>,
    pub created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Job {
    pub fn is_finished(&self) -> bool {
        JobStatus::parse(&self.status).is_some_and(JobStatus::is_terminal)
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub data: Vec<T>,
    #[serde(default)]
    pub has_more: bool,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

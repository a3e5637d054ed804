//! Errors of the domain layer: what a service call can answer, and what a store can fail with.
//! Each boundary (HTTP, queue) maps these exhaustively.

use crate::batches::BatchStatus;
use crate::jobs::JobStatus;

/// A storage adapter's failure. All of them are worth retrying later: a logical conflict is not
/// an error but an outcome of the call that had it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

/// What a service call can answer instead of its result.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
        code: Option<String>,
    },
    /// The request (an upload) exceeds a size limit; the message says which.
    #[error("{message}")]
    TooLarge { message: String },
    #[error("{what} not found")]
    NotFound { what: &'static str, id: String },
    #[error("cannot {action} a job with status '{}'", status.as_str())]
    Conflict {
        action: &'static str,
        status: JobStatus,
    },
    /// A recurring schedule's state machine refuses the action.
    #[error("cannot {action} a recurring schedule with status '{}'", status.as_str())]
    RecurringConflict {
        action: &'static str,
        status: crate::recurring::RecurringStatus,
    },
    #[error("cannot cancel a batch with status '{}'", status.as_str())]
    BatchConflict { status: BatchStatus },
    /// The resource's state forbids the request (an upload that is cancelled, expired or
    /// already completed otherwise); answered 409.
    #[error("{message}")]
    StateConflict {
        message: String,
        param: Option<String>,
        code: String,
    },
    /// A per-tenant cap is reached; retry later.
    #[error("{message}")]
    RateLimited { message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>, code: Option<&str>) -> Self {
        ServiceError::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
            code: code.map(str::to_owned),
        }
    }
}

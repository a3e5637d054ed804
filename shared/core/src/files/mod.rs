//! Files (OpenAI's Files API): the stored record, purposes, list queries, and the checks an upload
//! passes while its bytes stream past (size cap, UTF-8), so no upload is ever held whole.

use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;

use crate::clock::Timestamp;
use crate::error::{ServiceError, StoreError};
use crate::ids::{FileId, TenantId};

pub mod service;

/// Batch input files expire this long after upload, as on OpenAI.
pub const BATCH_INPUT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
pub const DEFAULT_FILE_LIST_LIMIT: usize = 10_000;
/// The seconds an `expires_after` may give (an hour to 30 days, as OpenAI bounds it), on an
/// uploaded file, an upload and a batch's output files alike.
pub const EXPIRES_AFTER_SECONDS: RangeInclusive<u64> = 3600..=2_592_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilePurpose {
    /// Batch input, uploaded by clients.
    Batch,
    /// Batch results, written by Prism.
    BatchOutput,
}

impl FilePurpose {
    pub const ALL: [FilePurpose; 2] = [FilePurpose::Batch, FilePurpose::BatchOutput];

    pub fn as_str(self) -> &'static str {
        match self {
            FilePurpose::Batch => "batch",
            FilePurpose::BatchOutput => "batch_output",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "batch" => Some(FilePurpose::Batch),
            "batch_output" => Some(FilePurpose::BatchOutput),
            _ => None,
        }
    }
}

/// A file as the store holds it; its bytes live in the blob store under [`FileRecord::blob_key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: FileId,
    pub tenant: TenantId,
    pub purpose: FilePurpose,
    pub filename: String,
    pub bytes: u64,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

impl FileRecord {
    pub fn blob_key(&self) -> String {
        file_blob_key(&self.tenant, &self.id)
    }
}

pub fn file_blob_key(tenant: &TenantId, id: &FileId) -> String {
    format!("files/{tenant}/{id}")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListOrder {
    Asc,
    Desc,
}

/// `GET /v1/files` parameters, as OpenAI takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListQuery {
    pub purpose: Option<FilePurpose>,
    pub limit: usize,
    pub after: Option<FileId>,
    pub order: ListOrder,
}

impl FileListQuery {
    pub fn parse(
        purpose: Option<&str>,
        limit: Option<&str>,
        after: Option<&str>,
        order: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let invalid = |message: String, param: &str| {
            ServiceError::invalid(message, Some(param), Some("invalid_value"))
        };
        let purpose = match purpose {
            None | Some("") => None,
            Some(p) => Some(FilePurpose::parse(p).ok_or_else(|| {
                invalid(
                    format!("Invalid 'purpose': '{p}'. Expected 'batch' or 'batch_output'."),
                    "purpose",
                )
            })?),
        };
        let limit = match limit {
            None => DEFAULT_FILE_LIST_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=DEFAULT_FILE_LIST_LIMIT).contains(&n) => n,
                _ => {
                    return Err(invalid(
                        format!(
                            "Invalid 'limit': expected an integer from 1 to {DEFAULT_FILE_LIST_LIMIT}."
                        ),
                        "limit",
                    ));
                }
            },
        };
        let after = match after {
            None | Some("") => None,
            Some(s) => Some(
                FileId::parse(s)
                    .ok_or_else(|| invalid("Invalid 'after': not a file id.".into(), "after"))?,
            ),
        };
        let order = match order {
            None | Some("") | Some("desc") => ListOrder::Desc,
            Some("asc") => ListOrder::Asc,
            Some(other) => {
                return Err(invalid(
                    format!("Invalid 'order': '{other}'. Expected 'asc' or 'desc'."),
                    "order",
                ));
            }
        };
        Ok(Self {
            purpose,
            limit,
            after,
            order,
        })
    }
}

/// Why an upload stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the file is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the file is not UTF-8 text")]
    NotUtf8,
    #[error("the upload was interrupted: {0}")]
    Interrupted(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Bytes on their way in, failing as soon as a check fails.
pub type UploadStream<'a> = BoxStream<'a, Result<Bytes, UploadError>>;

/// Validates UTF-8 across chunk boundaries, holding back at most 3 bytes of a split character.
#[derive(Debug, Default)]
pub struct Utf8Check {
    pending: Vec<u8>,
}

impl Utf8Check {
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), UploadError> {
        let mut joined;
        let data = if self.pending.is_empty() {
            chunk
        } else {
            joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(chunk);
            &joined[..]
        };
        match std::str::from_utf8(data) {
            Ok(_) => Ok(()),
            // An incomplete character at the very end: wait for the next chunk.
            Err(e) if e.error_len().is_none() => {
                self.pending = data[e.valid_up_to()..].to_vec();
                Ok(())
            }
            Err(_) => Err(UploadError::NotUtf8),
        }
    }

    pub fn finish(&self) -> Result<(), UploadError> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(UploadError::NotUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_split_across_chunks_is_accepted_and_broken_bytes_are_not() {
        let text = "héllo wörld ✓".as_bytes();
        for cut in 0..text.len() {
            let mut check = Utf8Check::default();
            check.feed(&text[..cut]).unwrap();
            check.feed(&text[cut..]).unwrap();
            check.finish().unwrap();
        }
        let mut check = Utf8Check::default();
        assert!(check.feed(&[b'a', 0xff, b'b']).is_err());
        let mut truncated = Utf8Check::default();
        truncated.feed(&"✓".as_bytes()[..2]).unwrap();
        assert!(truncated.finish().is_err());
    }

    #[test]
    fn list_query_defaults_and_rejects_bad_values() {
        let q = FileListQuery::parse(None, None, None, None).unwrap();
        assert_eq!(
            (q.limit, q.order, q.purpose),
            (10_000, ListOrder::Desc, None)
        );
        assert!(FileListQuery::parse(Some("vision"), None, None, None).is_err());
        assert!(FileListQuery::parse(None, Some("0"), None, None).is_err());
        assert!(FileListQuery::parse(None, None, None, Some("up")).is_err());
        assert!(FileListQuery::parse(None, None, Some("job_x"), None).is_err());
    }
}

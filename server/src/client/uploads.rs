//! The Uploads API from the client side: a file larger than one part goes up as an Upload whose
//! parts are read from disk and sent in parallel (a bounded number at once, so memory holds at
//! most that many parts), then completed in order; a smaller one goes to `POST /v1/files`.
//! Progress is reported in bytes as parts finish.

use std::path::Path;

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{Client, ClientError, FileObject, files, path_id};

/// Parts of 4 MiB: under the AWS backend's per-request cap (Lambda's 6 MB payload), and what
/// README tells SDK users to pass as `part_size`.
pub const DEFAULT_PART_SIZE: u64 = 4 * 1024 * 1024;
/// Parts in flight at once.
pub const DEFAULT_PARALLEL_PARTS: usize = 4;

/// How a file goes up.
#[derive(Debug, Clone, Copy)]
pub struct UploadPlan {
    /// Files larger than this go through the Uploads API, in parts of this size.
    pub part_size: u64,
    pub parallel: usize,
}

impl Default for UploadPlan {
    fn default() -> Self {
        Self {
            part_size: DEFAULT_PART_SIZE,
            parallel: DEFAULT_PARALLEL_PARTS,
        }
    }
}

impl UploadPlan {
    /// The byte ranges of the parts of a file of `bytes` bytes (none for a file that goes whole
    /// to `POST /v1/files`).
    pub fn parts(&self, bytes: u64) -> Vec<(u64, u64)> {
        let size = self.part_size.max(1);
        if bytes <= size {
            return Vec::new();
        }
        (0..bytes.div_ceil(size))
            .map(|i| (i * size, (bytes - i * size).min(size)))
            .collect()
    }
}

#[derive(Debug, Deserialize)]
struct UploadObject {
    id: String,
    #[serde(default)]
    file: Option<FileObject>,
}

#[derive(Debug, Deserialize)]
struct PartObject {
    id: String,
}

/// Uploads the file at `path` with `purpose`, the way [`UploadPlan`] says; `progress` is told
/// the file's size once, then the bytes sent as each part (or the whole file) is accepted.
pub async fn upload_file(
    client: &Client,
    path: &Path,
    purpose: &str,
    plan: UploadPlan,
    progress: &(dyn Fn(UploadProgress) + Sync),
) -> Result<FileObject, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let bytes = tokio::fs::metadata(path).await.map_err(io)?.len();
    progress(UploadProgress::Started { bytes });
    let parts = plan.parts(bytes);
    if parts.is_empty() {
        let file = files::upload(client, path, purpose).await?;
        progress(UploadProgress::Sent { bytes });
        return Ok(file);
    }
    let filename = path.file_name().map_or_else(
        || "upload.jsonl".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let upload: UploadObject = client
        .json(
            client.request(Method::POST, "/uploads").json(&json!({
                "bytes": bytes,
                "filename": filename,
                "mime_type": "application/jsonl",
                "purpose": purpose,
            })),
            "an upload",
        )
        .await?;
    let upload_id = path_id(&upload.id)?.to_owned();
    // `buffered` keeps the parts' order for `complete` while up to `parallel` are in flight.
    let part_ids: Vec<String> = futures::stream::iter(parts)
        .map(|(offset, len)| {
            let upload_id = upload_id.as_str();
            async move {
                let data = read_range(path, offset, len).await?;
                let form = Form::new().part(
                    "data",
                    Part::bytes(data)
                        .file_name("part")
                        .mime_str("application/octet-stream")
                        .map_err(|source| ClientError::Transport {
                            url: client.base_url().to_owned(),
                            source,
                        })?,
                );
                let part: PartObject = client
                    .json(
                        client
                            .request(Method::POST, &format!("/uploads/{upload_id}/parts"))
                            .multipart(form),
                        "an upload part",
                    )
                    .await?;
                progress(UploadProgress::Sent { bytes: len });
                Ok::<_, ClientError>(part.id)
            }
        })
        .buffered(plan.parallel.max(1))
        .try_collect()
        .await?;
    let completed: UploadObject = client
        .json(
            client
                .request(Method::POST, &format!("/uploads/{upload_id}/complete"))
                .json(&json!({ "part_ids": part_ids })),
            "a completed upload",
        )
        .await?;
    completed
        .file
        .ok_or(ClientError::MissingFile { upload: upload_id })
}

/// What [`upload_file`] reports as it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadProgress {
    /// The file's size, before anything is sent.
    Started { bytes: u64 },
    /// This many more bytes were accepted.
    Sent { bytes: u64 },
}

/// `len` bytes of the file from `offset`: one part, read when its turn to be sent comes.
async fn read_range(path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, ClientError> {
    let io = |source| ClientError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = tokio::fs::File::open(path).await.map_err(io)?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(io)?;
    let mut data = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
    file.read_exact(&mut data).await.map_err(io)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_of_one_part_or_less_goes_whole_and_a_larger_one_in_parts_that_tile_it() {
        let plan = UploadPlan {
            part_size: 10,
            parallel: 2,
        };
        assert!(plan.parts(0).is_empty());
        assert!(plan.parts(10).is_empty());
        assert_eq!(plan.parts(11), vec![(0, 10), (10, 1)]);
        assert_eq!(plan.parts(30), vec![(0, 10), (10, 10), (20, 10)]);
    }
}

//! The `BlobStore` port over local files under the data directory: each key is a file, written to
//! a temporary name, flushed to disk and renamed into place, so a reader never sees half a blob
//! and a crash leaves at most a temporary file.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use prism_core::StoreError;
use prism_core::files::{UploadError, UploadStream};
use prism_core::ports::{BlobStore, BlobStream};
use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;

use crate::db::unavailable;

/// Suffix of blobs being written; what a crash can leave behind.
const PARTIAL: &str = ".partial";

#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Keys are made by Prism (`files/<tenant>/<id>`); anything that could leave the root is
    /// refused rather than trusted.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let safe = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty() && part != "." && part != ".." && !part.contains('\\')
            });
        if safe {
            Ok(self.root.join(key))
        } else {
            Err(StoreError::Corrupt(format!("unusable blob key {key:?}")))
        }
    }
}

async fn write_all(path: &Path, mut body: UploadStream<'_>) -> Result<u64, UploadError> {
    let mut file = tokio::fs::File::create(path).await.map_err(unavailable)?;
    let mut written = 0u64;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await.map_err(unavailable)?;
        written += chunk.len() as u64;
    }
    file.flush().await.map_err(unavailable)?;
    file.sync_all().await.map_err(unavailable)?;
    Ok(written)
}

#[async_trait]
impl BlobStore for LocalBlobStore {
    async fn put_stream(&self, key: &str, body: UploadStream<'_>) -> Result<u64, UploadError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(unavailable)?;
        }
        let suffix: u32 = rand::rng().random();
        let partial = path.with_file_name(format!(
            "{}.{suffix:08x}{PARTIAL}",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        match write_all(&partial, body).await {
            Ok(written) => {
                tokio::fs::rename(&partial, &path)
                    .await
                    .map_err(unavailable)?;
                Ok(written)
            }
            Err(error) => {
                let _ = tokio::fs::remove_file(&partial).await;
                Err(error)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<BlobStream, StoreError> {
        let file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(unavailable)?;
        Ok(ReaderStream::with_capacity(file, 64 * 1024)
            .map_err(unavailable)
            .boxed())
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, StoreError> {
        use tokio::io::{AsyncReadExt, AsyncSeekExt};
        let mut file = tokio::fs::File::open(self.path(key)?)
            .await
            .map_err(unavailable)?;
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(unavailable)?;
        let len = usize::try_from(end.saturating_sub(start))
            .map_err(|_| StoreError::Corrupt("range too large".into()))?;
        let mut buffer = vec![0u8; len];
        file.read_exact(&mut buffer).await.map_err(unavailable)?;
        Ok(Bytes::from(buffer))
    }

    async fn presigned_get(
        &self,
        _key: &str,
        _ttl: Duration,
    ) -> Result<Option<String>, StoreError> {
        // Local files are only reachable through this process.
        Ok(None)
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match tokio::fs::remove_file(self.path(key)?).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }
}

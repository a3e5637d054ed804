//! S3: values too large for a DynamoDB item (spilled requests and results, each under a key
//! written once), and the `BlobStore` port for files. Uploads stream through in parts of
//! [`PART_BYTES`] (S3's multipart minimum), so memory stays flat whatever the file's size.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use prism_core::StoreError;
use prism_core::files::{UploadError, UploadStream};
use prism_core::ports::{BlobStore, BlobStream};

use crate::attrs::unavailable;

/// S3's smallest multipart part (except the last); also the most an upload holds in memory.
const PART_BYTES: usize = 5 * 1024 * 1024;

#[derive(Clone)]
pub struct S3Blobs {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: aws_sdk_s3::Client, bucket: String) -> Self {
        Self { client, bucket }
    }

    pub async fn put(&self, key: &str, body: Bytes) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The whole object, for values known to be small (spilled job bodies).
    pub async fn read_all(&self, key: &str) -> Result<Bytes, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        let data = object.body.collect().await.map_err(unavailable)?;
        Ok(data.into_bytes())
    }

    /// Sends the parts after the first full one; the caller aborts the upload on failure.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        mut buffer: BytesMut,
        mut body: UploadStream<'_>,
    ) -> Result<(u64, Vec<CompletedPart>), UploadError> {
        let mut parts = Vec::new();
        let mut total = (first.len() + buffer.len()) as u64;
        let mut pending = Some(first);
        loop {
            if let Some(part) = pending.take() {
                let number = i32::try_from(parts.len() + 1).unwrap_or(i32::MAX);
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .body(ByteStream::from(part))
                    .send()
                    .await
                    .map_err(unavailable)?;
                parts.push(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag)
                        .build(),
                );
            }
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    total += chunk.len() as u64;
                    buffer.extend_from_slice(&chunk);
                    if buffer.len() >= PART_BYTES {
                        pending = Some(buffer.split_to(PART_BYTES).freeze());
                    }
                }
                None if buffer.is_empty() => return Ok((total, parts)),
                None => pending = Some(std::mem::take(&mut buffer).freeze()),
            }
        }
    }
}

#[async_trait]
impl BlobStore for S3Blobs {
    async fn put_stream(&self, key: &str, body: UploadStream<'_>) -> Result<u64, UploadError> {
        // Fused: the part loop asks once more after the last chunk, and a finished `unfold`
        // (every checked upload stream) panics when polled again.
        let mut body = body.fuse().boxed();
        // Up to one part, a plain PUT; only larger bodies pay for a multipart upload.
        let mut buffer = BytesMut::new();
        while buffer.len() < PART_BYTES {
            match body.next().await {
                Some(chunk) => buffer.extend_from_slice(&chunk?),
                None => {
                    let total = buffer.len() as u64;
                    self.put(key, buffer.freeze()).await?;
                    return Ok(total);
                }
            }
        }
        let first = buffer.split_to(PART_BYTES).freeze();
        let upload_id = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?
            .upload_id
            .ok_or_else(|| StoreError::Unavailable("S3 returned no upload id".into()))?;
        match self
            .upload_parts(key, &upload_id, first, buffer, body)
            .await
        {
            Ok((total, parts)) => {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await
                    .map_err(unavailable)?;
                Ok(total)
            }
            Err(error) => {
                // Parts of an aborted upload are freed; the bucket's lifecycle rule catches an
                // abort that itself fails.
                let aborted = self
                    .client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(&upload_id)
                    .send()
                    .await;
                if let Err(abort) = aborted {
                    tracing::warn!(error = %unavailable(abort), "could not abort a multipart upload");
                }
                Err(error)
            }
        }
    }

    async fn get(&self, key: &str) -> Result<BlobStream, StoreError> {
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(futures::stream::unfold(object.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), body)),
                Ok(None) => None,
                Err(error) => Some((Err(unavailable(error)), body)),
            }
        })
        .boxed())
    }

    async fn get_range(&self, key: &str, start: u64, end: u64) -> Result<Bytes, StoreError> {
        if end <= start {
            return Ok(Bytes::new());
        }
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .range(format!("bytes={start}-{}", end - 1))
            .send()
            .await
            .map_err(unavailable)?;
        let data = object.body.collect().await.map_err(unavailable)?;
        Ok(data.into_bytes())
    }

    async fn presigned_get(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let config = PresigningConfig::expires_in(ttl).map_err(unavailable)?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(config)
            .await
            .map_err(unavailable)?;
        Ok(Some(request.uri().to_owned()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        // S3 answers a delete of a missing key with success too.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

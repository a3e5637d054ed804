//! S3: values too large for a DynamoDB item (spilled requests and results, each under a key
//! written once), and the `BlobStore` port for files. Uploads stream through in parts of
//! [`PART_BYTES`] (S3's multipart minimum), a few sent at once while the next one fills, so
//! memory stays flat whatever the file's size.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use prism_core::StoreError;
use prism_core::files::{UploadError, UploadStream};
use prism_core::ports::{BlobStore, BlobStream};

use crate::attrs::unavailable;

/// S3's smallest multipart part (except the last).
const PART_BYTES: usize = 5 * 1024 * 1024;
/// Parts of one upload sent at once while the next one fills: an upload holds at most this
/// many parts plus the one filling, whatever the file's size.
const PARTS_IN_FLIGHT: usize = 2;

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

    /// Sends the parts after the first full one, [`PARTS_IN_FLIGHT`] at a time while the body
    /// is read on; the caller aborts the upload on failure.
    async fn upload_parts(
        &self,
        key: &str,
        upload_id: &str,
        first: Bytes,
        mut buffer: BytesMut,
        mut body: UploadStream<'_>,
    ) -> Result<(u64, Vec<CompletedPart>), UploadError> {
        let mut total = (first.len() + buffer.len()) as u64;
        let mut sent = Vec::new();
        let mut sending = FuturesUnordered::new();
        let mut number = 1;
        sending.push(self.send_part(key, upload_id, number, first));
        let mut ended = false;
        loop {
            let full = buffer.len() >= PART_BYTES || (ended && !buffer.is_empty());
            if full && sending.len() < PARTS_IN_FLIGHT {
                number += 1;
                let part = buffer.split_to(PART_BYTES.min(buffer.len())).freeze();
                sending.push(self.send_part(key, upload_id, number, part));
                continue;
            }
            if full || ended {
                // A full part waits for room; after the body's end, the last sends finish.
                match sending.next().await {
                    Some(part) => sent.push(part?),
                    None => break,
                }
                continue;
            }
            tokio::select! {
                Some(part) = sending.next(), if !sending.is_empty() => sent.push(part?),
                chunk = body.next() => match chunk {
                    Some(chunk) => {
                        let chunk = chunk?;
                        total += chunk.len() as u64;
                        buffer.extend_from_slice(&chunk);
                    }
                    None => ended = true,
                },
            }
        }
        sent.sort_by_key(CompletedPart::part_number);
        Ok((total, sent))
    }

    async fn send_part(
        &self,
        key: &str,
        upload_id: &str,
        number: i32,
        part: Bytes,
    ) -> Result<CompletedPart, UploadError> {
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
        Ok(CompletedPart::builder()
            .part_number(number)
            .set_e_tag(out.e_tag)
            .build())
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

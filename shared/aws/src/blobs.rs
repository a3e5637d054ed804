//! S3 for values too large for a DynamoDB item: spilled requests and results, each under a key
//! written once (results are unique per attempt, so a stale worker never overwrites a newer one).

use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use prism_core::StoreError;

use crate::attrs::unavailable;

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

    pub async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
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
}

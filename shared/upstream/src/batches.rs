//! The `ProviderBatches` port over HTTP: a provider's own `/files` and `/batches` (OpenAI's Files
//! and Batch APIs), on the same pooled client and provider auth as completions.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use prism_core::batches::native::{NewProviderBatch, ProviderBatch};
use prism_core::batches::{BatchStatus, RequestCounts};
use prism_core::ports::{ProviderBatches, UpstreamError};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Deserialize;

use crate::client::{HttpUpstream, send_error, status_error};
use crate::response;

/// Bounds one Files or Batch API call (an upload of a large sub-file included).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// The Batch API's largest list page.
const LIST_PAGE: u32 = 100;

impl HttpUpstream {
    fn provider_call(
        &self,
        provider: &str,
        method: Method,
        path: &[&str],
        query: &[(&str, &str)],
    ) -> Result<RequestBuilder, UpstreamError> {
        let found = self.provider_named(provider)?;
        let mut url: Url = found.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(path);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        let request = self.client.request(method, url).timeout(CALL_TIMEOUT);
        Ok(match &found.authorization {
            Some(value) => request.header(AUTHORIZATION, value.clone()),
            None => request,
        })
    }

    async fn send(request: RequestBuilder) -> Result<Response, UpstreamError> {
        let response = request.send().await.map_err(send_error)?;
        if !response.status().is_success() {
            return Err(status_error(response).await);
        }
        Ok(response)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        request: RequestBuilder,
    ) -> Result<T, UpstreamError> {
        let response = Self::send(request).await?;
        let body = response
            .bytes()
            .await
            .map_err(|e| UpstreamError::InvalidResponse(response::describe(e)))?;
        serde_json::from_slice(&body).map_err(|e| UpstreamError::InvalidResponse(e.to_string()))
    }

    async fn batch_of(request: RequestBuilder) -> Result<ProviderBatch, UpstreamError> {
        Self::json::<WireBatch>(request).await?.into_batch()
    }
}

#[derive(Deserialize)]
struct WireFile {
    id: String,
}

#[derive(Deserialize)]
struct WireCounts {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    failed: u64,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct WireErrors {
    #[serde(default)]
    data: Vec<WireError>,
}

#[derive(Deserialize)]
struct WireBatch {
    id: String,
    status: String,
    #[serde(default)]
    input_file_id: Option<String>,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    request_counts: Option<WireCounts>,
    #[serde(default)]
    errors: Option<WireErrors>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    created_at: u64,
}

impl WireBatch {
    fn into_batch(self) -> Result<ProviderBatch, UpstreamError> {
        let status = BatchStatus::parse(&self.status).ok_or_else(|| {
            UpstreamError::InvalidResponse(format!("unknown batch status '{}'", self.status))
        })?;
        let counts = self
            .request_counts
            .map_or_else(RequestCounts::default, |c| RequestCounts {
                total: c.total,
                completed: c.completed,
                failed: c.failed,
            });
        let errors = self
            .errors
            .map(|e| e.data)
            .unwrap_or_default()
            .into_iter()
            .map(|e| {
                (
                    e.code.unwrap_or_else(|| "invalid_request".to_owned()),
                    e.message.unwrap_or_default(),
                )
            })
            .collect();
        Ok(ProviderBatch {
            id: self.id,
            status,
            input_file_id: self.input_file_id,
            output_file_id: self.output_file_id,
            error_file_id: self.error_file_id,
            counts,
            errors,
            metadata: self.metadata.unwrap_or_default(),
            created_at: self.created_at,
        })
    }
}

#[derive(Deserialize)]
struct WirePage {
    data: Vec<WireBatch>,
    #[serde(default)]
    has_more: bool,
}

/// A `multipart/form-data` body of the two fields an upload needs; built by hand since the
/// sub-file is already in memory and reqwest's multipart feature would add a dependency for it.
fn upload_form(filename: &str, body: &Bytes) -> (String, Bytes) {
    let boundary = format!("prism-{}", hex::encode(rand::random::<[u8; 12]>()));
    let mut form = Vec::with_capacity(body.len() + 512);
    form.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
             --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/jsonl\r\n\r\n",
            filename.replace('"', "")
        )
        .as_bytes(),
    );
    form.extend_from_slice(body);
    form.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/form-data; boundary={boundary}"),
        Bytes::from(form),
    )
}

#[async_trait]
impl ProviderBatches for HttpUpstream {
    async fn upload_batch_file(
        &self,
        provider: &str,
        filename: &str,
        body: Bytes,
    ) -> Result<String, UpstreamError> {
        let (content_type, form) = upload_form(filename, &body);
        let content_type = HeaderValue::from_str(&content_type)
            .map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        let request = self
            .provider_call(provider, Method::POST, &["files"], &[])?
            .header(CONTENT_TYPE, content_type)
            .body(form);
        Ok(Self::json::<WireFile>(request).await?.id)
    }

    async fn create_batch(
        &self,
        provider: &str,
        request: &NewProviderBatch,
    ) -> Result<ProviderBatch, UpstreamError> {
        let metadata: HashMap<&str, &str> = request
            .metadata
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let body = serde_json::json!({
            "input_file_id": request.input_file_id,
            "endpoint": request.endpoint,
            "completion_window": prism_core::batches::COMPLETION_WINDOW,
            "metadata": metadata,
        });
        let body =
            serde_json::to_vec(&body).map_err(|e| UpstreamError::InvalidResponse(e.to_string()))?;
        let call = self
            .provider_call(provider, Method::POST, &["batches"], &[])?
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .body(body);
        Self::batch_of(call).await
    }

    async fn retrieve_batch(
        &self,
        provider: &str,
        id: &str,
    ) -> Result<ProviderBatch, UpstreamError> {
        Self::batch_of(self.provider_call(provider, Method::GET, &["batches", id], &[])?).await
    }

    async fn find_batch(
        &self,
        provider: &str,
        key: &str,
        value: &str,
        created_since: u64,
    ) -> Result<Option<ProviderBatch>, UpstreamError> {
        let mut after: Option<String> = None;
        loop {
            let limit = LIST_PAGE.to_string();
            let mut query = vec![("limit", limit.as_str())];
            if let Some(after) = &after {
                query.push(("after", after.as_str()));
            }
            let call = self.provider_call(provider, Method::GET, &["batches"], &query)?;
            let page: WirePage = Self::json(call).await?;
            let mut older = false;
            for wire in page.data {
                after = Some(wire.id.clone());
                if wire
                    .metadata
                    .as_ref()
                    .and_then(|m| m.get(key))
                    .map(String::as_str)
                    == Some(value)
                {
                    return wire.into_batch().map(Some);
                }
                // Newest first: past the oldest time it could have been created, stop.
                older |= wire.created_at < created_since;
            }
            if older || !page.has_more || after.is_none() {
                return Ok(None);
            }
        }
    }

    async fn cancel_batch(&self, provider: &str, id: &str) -> Result<ProviderBatch, UpstreamError> {
        Self::batch_of(self.provider_call(
            provider,
            Method::POST,
            &["batches", id, "cancel"],
            &[],
        )?)
        .await
    }

    async fn file_content(
        &self,
        provider: &str,
        file_id: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, UpstreamError>>, UpstreamError> {
        let call =
            self.provider_call(provider, Method::GET, &["files", file_id, "content"], &[])?;
        let response = Self::send(call).await?;
        Ok(response
            .bytes_stream()
            .map(|piece| piece.map_err(|e| UpstreamError::InvalidResponse(response::describe(e))))
            .boxed())
    }

    async fn delete_file(&self, provider: &str, file_id: &str) -> Result<(), UpstreamError> {
        let call = self.provider_call(provider, Method::DELETE, &["files", file_id], &[])?;
        match Self::send(call).await {
            Ok(_) | Err(UpstreamError::Status { status: 404, .. }) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_upload_form_holds_the_purpose_and_the_file() {
        let (content_type, form) = upload_form("g.jsonl", &Bytes::from_static(b"{}\n"));
        let boundary = content_type.split("boundary=").nth(1).unwrap();
        let text = String::from_utf8(form.to_vec()).unwrap();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(text.contains("filename=\"g.jsonl\""));
        assert!(text.ends_with(&format!("{{}}\n\r\n--{boundary}--\r\n")));
    }
}

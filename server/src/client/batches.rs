//! The Batch API: create, read, list and cancel batches.

use reqwest::Method;
use serde_json::{Map, Value, json};

use super::{Batch, Client, ClientError, Page, path_id};

/// Creates a chat completions batch over the uploaded file `input_file_id`.
pub async fn create(
    client: &Client,
    input_file_id: &str,
    metadata: &Map<String, Value>,
) -> Result<Batch, ClientError> {
    let mut body = json!({
        "input_file_id": input_file_id,
        "endpoint": prism_core::ApiEndpoint::ChatCompletions.path(),
        "completion_window": prism_core::batches::COMPLETION_WINDOW,
    });
    if !metadata.is_empty() {
        body["metadata"] = Value::Object(metadata.clone());
    }
    client
        .json(
            client.request(Method::POST, "/batches").json(&body),
            "a batch",
        )
        .await
}

pub async fn get(client: &Client, id: &str) -> Result<Batch, ClientError> {
    client
        .json(
            client.request(Method::GET, &format!("/batches/{}", path_id(id)?)),
            "a batch",
        )
        .await
}

/// One page of the tenant's batches, newest first.
pub async fn list(
    client: &Client,
    limit: Option<u32>,
    after: Option<&str>,
) -> Result<Page<Batch>, ClientError> {
    // An absent value leaves its pair out of the query string.
    let query = [
        ("limit", limit.map(|l| l.to_string())),
        ("after", after.map(str::to_owned)),
    ];
    client
        .json(
            client.request(Method::GET, "/batches").query(&query),
            "a list of batches",
        )
        .await
}

/// Asks Prism to cancel the batch: it answers `cancelling` (or `cancelled` again).
pub async fn cancel(client: &Client, id: &str) -> Result<Batch, ClientError> {
    client
        .json(
            client.request(Method::POST, &format!("/batches/{}/cancel", path_id(id)?)),
            "a batch",
        )
        .await
}

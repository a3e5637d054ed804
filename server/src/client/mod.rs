//! Prism's HTTP API as plain async functions, for the `prism` commands that talk to a running
//! Prism (`batches`, `jobs`, `scheduled`) and any later ones: one [`Client`] (base URL, key,
//! HTTP connection pool), the objects it answers, and one typed error for every way a call fails.

pub mod batches;
pub mod files;
pub mod jobs;
mod objects;
pub mod progress;
pub mod uploads;

use std::path::PathBuf;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use objects::{Batch, FileObject, Job, Page, RequestCounts};

/// How a call to Prism failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Prism answered with an error (OpenAI's error shape).
    #[error("{message} (HTTP {status}{})", .code.as_deref().map(|c| format!(", {c}")).unwrap_or_default())]
    Api {
        status: StatusCode,
        kind: Option<String>,
        code: Option<String>,
        param: Option<String>,
        message: String,
    },
    #[error("cannot reach Prism at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("Prism answered something that is not {expected}: {source}")]
    Decode {
        expected: &'static str,
        #[source]
        source: reqwest::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid base URL {0:?}: it must start with http:// or https://")]
    InvalidBaseUrl(String),
    #[error("invalid API key: it must be printable ASCII")]
    InvalidKey,
    #[error("{0:?} is not an id: ids are letters, digits, '_' and '-'")]
    InvalidId(String),
    #[error("Prism completed upload {upload} without naming its file")]
    MissingFile { upload: String },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A running Prism: its base URL as the SDKs take it (ending in `/v1`) and a key.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, ClientError> {
        let base = base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::InvalidBaseUrl(base_url.to_owned()));
        }
        if api_key.is_empty() || !api_key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ClientError::InvalidKey);
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("prism-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                url: base.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            base: base.to_owned(),
            key: api_key.to_owned(),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// A request to `path` (relative to the base URL, e.g. `/batches`) carrying the key.
    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
    }

    /// Sends `request`; an error answer becomes [`ClientError::Api`].
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response, ClientError> {
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: self.base.clone(),
                source,
            })?;
        if response.status().is_success() {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// Sends `request` and reads its JSON answer.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
        expected: &'static str,
    ) -> Result<T, ClientError> {
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|source| ClientError::Decode { expected, source })
    }
}

/// `id` as a path segment: only the characters Prism's ids use, so an argument can never reach
/// another route (`../`, `?`, `#`).
pub(crate) fn path_id(id: &str) -> Result<&str, ClientError> {
    let valid = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if valid {
        Ok(id)
    } else {
        Err(ClientError::InvalidId(id.to_owned()))
    }
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: String,
    #[serde(rename = "type")]
    kind: Option<String>,
    code: Option<String>,
    param: Option<String>,
}

async fn api_error(response: Response) -> ClientError {
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    match serde_json::from_str::<ErrorEnvelope>(&text) {
        Ok(ErrorEnvelope { error }) => ClientError::Api {
            status,
            kind: error.kind,
            code: error.code,
            param: error.param,
            message: error.message,
        },
        // Not Prism's shape (a proxy in front of it, say): the start of what came.
        Err(_) => ClientError::Api {
            status,
            kind: None,
            code: None,
            param: None,
            message: text.chars().take(200).collect::<String>().trim().to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `list` in jobs.rs and batches.rs pass their optional pairs as they are.
    #[test]
    fn a_query_pair_without_a_value_is_left_out() {
        let client = Client::new("http://127.0.0.1:1/v1", "sk-test").unwrap();
        let pairs = [
            ("limit", Some("5".to_owned())),
            ("after", None),
            ("status", Some("pending".to_owned())),
        ];
        let request = client
            .request(reqwest::Method::GET, "/async")
            .query(&pairs)
            .build()
            .unwrap();
        assert_eq!(request.url().query(), Some("limit=5&status=pending"));
    }

    #[test]
    fn path_id_takes_prism_ids_and_refuses_anything_that_could_leave_the_segment() {
        for id in [
            "batch_01m8p04y240askjexr1zpamcex",
            "file-01m8p0",
            "sched_1",
            "job_1",
        ] {
            assert_eq!(path_id(id).unwrap(), id);
        }
        for id in ["", "../keys", "batch_1?x=1", "a/b", "a#b", "a b", "é"] {
            assert!(
                matches!(path_id(id), Err(ClientError::InvalidId(_))),
                "{id:?}"
            );
        }
    }
}

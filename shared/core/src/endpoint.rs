//! The OpenAI endpoints Prism forwards to providers, listed once: their paths on Prism and on the
//! provider, so routes, jobs, batch lines and the upstream client never spell a path themselves.

use serde::{Deserialize, Serialize};

/// An OpenAI endpoint whose requests Prism forwards to a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ApiEndpoint {
    #[serde(rename = "/v1/chat/completions")]
    ChatCompletions,
    #[serde(rename = "/v1/completions")]
    Completions,
    #[serde(rename = "/v1/embeddings")]
    Embeddings,
    #[serde(rename = "/v1/moderations")]
    Moderations,
    #[serde(rename = "/v1/responses")]
    Responses,
}

impl ApiEndpoint {
    pub const ALL: [Self; 5] = [
        Self::ChatCompletions,
        Self::Completions,
        Self::Embeddings,
        Self::Moderations,
        Self::Responses,
    ];

    /// The path as clients send it, and as a batch's `endpoint` and a line's `url` name it.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "/v1/chat/completions",
            Self::Completions => "/v1/completions",
            Self::Embeddings => "/v1/embeddings",
            Self::Moderations => "/v1/moderations",
            Self::Responses => "/v1/responses",
        }
    }

    pub fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.path() == path)
    }

    /// Whether the endpoint answers `stream: true` with server-sent events.
    pub fn streams(self) -> bool {
        matches!(
            self,
            Self::ChatCompletions | Self::Completions | Self::Responses
        )
    }

    /// The endpoints a batch may name: every forwarded one, as at OpenAI.
    pub const BATCHABLE: [Self; 5] = Self::ALL;

    /// The endpoint a batch names, if batches run it.
    pub fn batchable(path: &str) -> Option<Self> {
        Self::BATCHABLE.into_iter().find(|e| e.path() == path)
    }

    /// The path segments after a provider's base URL (which ends in `/v1`).
    pub fn provider_segments(self) -> &'static [&'static str] {
        match self {
            Self::ChatCompletions => &["chat", "completions"],
            Self::Completions => &["completions"],
            Self::Embeddings => &["embeddings"],
            Self::Moderations => &["moderations"],
            Self::Responses => &["responses"],
        }
    }
}

impl std::fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_endpoint_reads_back_from_its_path_and_serializes_as_it() {
        for endpoint in ApiEndpoint::ALL {
            assert_eq!(ApiEndpoint::from_path(endpoint.path()), Some(endpoint));
            let json = serde_json::to_string(&endpoint).unwrap();
            assert_eq!(json, format!("\"{}\"", endpoint.path()));
            let provider = format!("/v1/{}", endpoint.provider_segments().join("/"));
            assert_eq!(provider, endpoint.path());
        }
        assert_eq!(ApiEndpoint::from_path("/v1/images"), None);
    }

    #[test]
    fn batches_run_every_forwarded_endpoint_and_nothing_else() {
        for endpoint in ApiEndpoint::ALL {
            assert_eq!(ApiEndpoint::batchable(endpoint.path()), Some(endpoint));
        }
        assert_eq!(ApiEndpoint::batchable("/v1/images/generations"), None);
        assert!(!ApiEndpoint::Embeddings.streams());
        assert!(ApiEndpoint::Completions.streams());
    }
}

//! The HTTP side of the generator: one keep-alive HTTP/1.1 client, the target's endpoints and
//! the chat-completion request every mode sends.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Client, StatusCode};
use serde_json::json;

/// Where requests go and with which key.
#[derive(Debug, Clone)]
pub struct Target {
    /// Scheme, host and port, without a trailing `/v1`.
    base: String,
    key: Option<String>,
}

impl Target {
    /// Accepts `http://host:port`, `http://host:port/` and `http://host:port/v1`.
    pub fn new(url: &str, key: Option<String>) -> anyhow::Result<Self> {
        let trimmed = url.trim().trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            anyhow::bail!("--url must start with http:// or https://, got {url:?}");
        }
        Ok(Self {
            base,
            key: key.filter(|k| !k.is_empty()),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn chat_url(&self) -> String {
        format!("{}/v1/chat/completions", self.base)
    }

    pub fn job_url(&self, id: &str) -> String {
        format!("{}/v1/async/{id}", self.base)
    }

    pub fn list_url(&self) -> String {
        format!("{}/v1/async", self.base)
    }

    /// Headers of every request; `async_job` adds `x-prism-async: true`.
    pub fn headers(&self, async_job: bool) -> anyhow::Result<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(key) = &self.key {
            let value = HeaderValue::from_str(&format!("Bearer {key}"))
                .context("the API key is not a valid header value")?;
            headers.insert(AUTHORIZATION, value);
        }
        if async_job {
            headers.insert("x-prism-async", HeaderValue::from_static("true"));
        }
        Ok(headers)
    }
}

/// A client whose pool keeps every connection the run opens: open-loop load at a high rate
/// needs as many connections as there are requests in flight, and reconnecting would be
/// measured as latency.
pub fn build_client(timeout: Duration) -> anyhow::Result<Client> {
    Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(usize::MAX)
        .pool_idle_timeout(Duration::from_secs(300))
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout)
        .build()
        .context("cannot build the HTTP client")
}

/// The body every chat request carries: one short user message for `model`.
pub fn chat_body(model: &str) -> anyhow::Result<Bytes> {
    let body = json!({
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
    });
    Ok(Bytes::from(
        serde_json::to_vec(&body).context("cannot encode the request body")?,
    ))
}

/// A short, stable name for a failure, used to count errors by kind.
pub fn classify(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connect"
    } else if error.is_body() || error.is_decode() {
        "body"
    } else if error.is_request() {
        "request"
    } else {
        "transport"
    };
    kind.to_owned()
}

/// The name of an unexpected status: `http 503`.
pub fn status_kind(status: StatusCode) -> String {
    format!("http {}", status.as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_v1_or_slash_is_dropped_from_the_base_url() {
        for url in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/",
        ] {
            let t = Target::new(url, None).unwrap();
            assert_eq!(t.chat_url(), "http://h:1/v1/chat/completions", "{url}");
        }
        assert!(Target::new("h:1", None).is_err());
    }

    #[test]
    fn the_key_becomes_a_bearer_header_and_async_adds_the_prism_header() {
        let t = Target::new("http://h:1", Some("sk-x".into())).unwrap();
        let h = t.headers(true).unwrap();
        assert_eq!(h[AUTHORIZATION], "Bearer sk-x");
        assert_eq!(h["x-prism-async"], "true");
        let anonymous = Target::new("http://h:1", Some(String::new())).unwrap();
        assert!(
            !anonymous
                .headers(false)
                .unwrap()
                .contains_key(AUTHORIZATION)
        );
    }

    #[test]
    fn the_body_names_the_model() {
        let body: serde_json::Value = serde_json::from_slice(&chat_body("m1").unwrap()).unwrap();
        assert_eq!(body["model"], "m1");
        assert_eq!(body["messages"][0]["role"], "user");
    }
}

//! The `WebhookSender` port over reqwest + rustls: resolves the endpoint's host once per
//! attempt, refuses the attempt if any address is forbidden (core's `webhooks::target` rule),
//! then connects to exactly the address it checked (`ClientBuilder::resolve`, so no second
//! lookup can swap in another), never follows redirects, and bounds the attempt to 10 s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prism_core::ports::{SendResult, WebhookSender};
use prism_core::webhooks::decisions::ATTEMPT_TIMEOUT;
use prism_core::webhooks::target::{Target, TargetError, address_allowed, parse_target};

/// Sends webhook attempts; one client per attempt, pinned to the address that was checked.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    timeout: Duration,
}

impl Default for HttpWebhookSender {
    fn default() -> Self {
        Self {
            timeout: ATTEMPT_TIMEOUT,
        }
    }
}

impl HttpWebhookSender {
    pub fn new() -> Self {
        Self::default()
    }
}

/// The target's addresses, all of them checked: one forbidden address refuses the target, so
/// a name that answers a public and a private address cannot be used to reach the private one.
async fn resolve_checked(
    url: &str,
    allow_private: bool,
    timeout: Duration,
) -> Result<(Target, SocketAddr), TargetError> {
    let target = parse_target(url, allow_private)?;
    let lookup = tokio::net::lookup_host((target.host.as_str(), target.port));
    let addresses: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| TargetError::Unresolved)?
        .map_err(|_| TargetError::Unresolved)?
        .collect();
    let first = *addresses.first().ok_or(TargetError::Unresolved)?;
    if addresses
        .iter()
        .any(|a| !address_allowed(a.ip(), allow_private))
    {
        return Err(TargetError::PrivateAddress);
    }
    Ok((target, first))
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn check_target(&self, url: &str, allow_private: bool) -> Result<(), TargetError> {
        resolve_checked(url, allow_private, self.timeout)
            .await
            .map(|_| ())
    }

    async fn send(
        &self,
        url: &str,
        headers: &[(&'static str, String)],
        body: &str,
        allow_private: bool,
    ) -> SendResult {
        let started = Instant::now();
        let failed = |error: String| SendResult {
            status: None,
            latency: started.elapsed(),
            error: Some(error),
        };
        let (target, address) = match resolve_checked(url, allow_private, self.timeout).await {
            Ok(resolved) => resolved,
            Err(error) => return failed(error.to_string()),
        };
        let client = reqwest::Client::builder()
            .resolve(&target.host, address)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(self.timeout.saturating_sub(started.elapsed()))
            .build();
        let client = match client {
            Ok(client) => client,
            Err(error) => return failed(format!("could not build the client: {error}")),
        };
        let mut request = client
            .post(target.url)
            .header("content-type", "application/json")
            .header("user-agent", "Prism-Webhooks/1");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        match request.body(body.to_owned()).send().await {
            Ok(response) => SendResult {
                status: Some(response.status().as_u16()),
                latency: started.elapsed(),
                error: None,
            },
            Err(error) if error.is_timeout() => failed("timed out".into()),
            Err(error) if error.is_connect() => failed("could not connect".into()),
            Err(_) => failed("the request failed".into()),
        }
    }
}

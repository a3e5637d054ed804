//! The `WebhookSender` port over reqwest + rustls. Two pooled clients (private targets allowed
//! or not), each resolving names through [`CheckedResolver`]: every address a name resolves to
//! is checked against core's `webhooks::target` rule, one forbidden address refuses the name,
//! and the connection goes to exactly the addresses that were checked (reqwest connects to what
//! its resolver returned; there is no second lookup to rebind). A pooled connection was checked
//! when it was opened. Literal IP hosts are checked by `parse_target` before any request. No
//! redirects are followed; an attempt has 10 s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use prism_core::ports::{SendResult, WebhookSender};
use prism_core::webhooks::decisions::ATTEMPT_TIMEOUT;
use prism_core::webhooks::target::{Target, TargetError, address_allowed, parse_target};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Resolves with the system resolver and refuses a name with any forbidden address.
#[derive(Debug, Clone, Copy)]
struct CheckedResolver {
    allow_private: bool,
    timeout: Duration,
}

async fn resolve_checked(
    host: &str,
    port: u16,
    allow_private: bool,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, TargetError> {
    let lookup = tokio::net::lookup_host((host, port));
    let addresses: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup)
        .await
        .map_err(|_| TargetError::Unresolved)?
        .map_err(|_| TargetError::Unresolved)?
        .collect();
    if addresses.is_empty() {
        return Err(TargetError::Unresolved);
    }
    if addresses
        .iter()
        .any(|a| !address_allowed(a.ip(), allow_private))
    {
        return Err(TargetError::PrivateAddress);
    }
    Ok(addresses)
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let this = *self;
        Box::pin(async move {
            // The port is the URL's: the connector sets it on each address.
            let addresses = resolve_checked(name.as_str(), 0, this.allow_private, this.timeout)
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Sends webhook attempts over two pooled clients, one per target policy.
#[derive(Debug, Clone)]
pub struct HttpWebhookSender {
    timeout: Duration,
    public_only: Option<reqwest::Client>,
    any_target: Option<reqwest::Client>,
}

fn client(allow_private: bool, timeout: Duration) -> Option<reqwest::Client> {
    let built = reqwest::Client::builder()
        .dns_resolver(Arc::new(CheckedResolver {
            allow_private,
            timeout,
        }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(timeout)
        .pool_idle_timeout(Duration::from_secs(30))
        .build();
    match built {
        Ok(client) => Some(client),
        Err(error) => {
            tracing::error!(%error, "could not build the webhook client");
            None
        }
    }
}

impl Default for HttpWebhookSender {
    fn default() -> Self {
        Self {
            timeout: ATTEMPT_TIMEOUT,
            public_only: client(false, ATTEMPT_TIMEOUT),
            any_target: client(true, ATTEMPT_TIMEOUT),
        }
    }
}

impl HttpWebhookSender {
    pub fn new() -> Self {
        Self::default()
    }
}

/// Why a request error happened, for the delivery list: a refused resolution says so.
fn describe(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = source {
        if let Some(target) = e.downcast_ref::<TargetError>() {
            return target.to_string();
        }
        source = e.source();
    }
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

#[async_trait]
impl WebhookSender for HttpWebhookSender {
    async fn check_target(&self, url: &str, allow_private: bool) -> Result<(), TargetError> {
        let Target { host, port, .. } = parse_target(url, allow_private)?;
        resolve_checked(&host, port, allow_private, self.timeout)
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
            retry_after: None,
        };
        let target = match parse_target(url, allow_private) {
            Ok(target) => target,
            Err(error) => return failed(error.to_string()),
        };
        let client = if allow_private {
            &self.any_target
        } else {
            &self.public_only
        };
        let Some(client) = client else {
            return failed("the webhook client is unavailable".into());
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
                retry_after: response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            Err(error) => failed(describe(&error)),
        }
    }
}

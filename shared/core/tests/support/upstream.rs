//! A scripted upstream: each `complete` call takes the next queued reply (an echo of the
//! request once the script runs out), and every call is recorded. A `hang` reply holds the call
//! until the test releases it (or the attempt's timeout passes), so a test can cancel mid-call;
//! a call dropped before it answered is counted as aborted.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use prism_core::ports::{Completion, Relay, Upstream, UpstreamError};
use prism_core::{Clock, JobError, Timestamp};
use tokio::sync::{Notify, watch};

/// The model every test routes; any other name is unknown to this upstream.
pub const MODEL: &str = "gpt-test";

#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with a chat completion naming the request's first message and some usage.
    Echo,
    /// 200 with this body as is (which may not be JSON at all).
    Body(String),
    /// An HTTP error status, with an optional `retry-after` and OpenAI error code.
    Status {
        status: u16,
        retry_after: Option<Duration>,
        code: Option<&'static str>,
    },
    /// A 2xx whose body is not a chat completion, as the HTTP client reports it.
    Invalid,
    /// Waits until [`Hang::release`] (then answers `then`) or the attempt's timeout.
    Hang(Hang, Box<Reply>),
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply::Status {
            status,
            retry_after: None,
            code: None,
        }
    }

    pub fn rate_limited(retry_after: Duration) -> Reply {
        Reply::Status {
            status: 429,
            retry_after: Some(retry_after),
            code: Some("rate_limit_exceeded"),
        }
    }
}

/// The release handle of a hanging reply.
#[derive(Debug, Clone, Default)]
pub struct Hang(Arc<Notify>);

impl Hang {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn release(&self) {
        self.0.notify_one();
    }
}

/// One call as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub model: String,
    pub body: Bytes,
    pub at: Timestamp,
}

impl Call {
    /// The request's first message, which tests use to name a request.
    pub fn prompt(&self) -> String {
        prompt_of(&self.body)
    }
}

fn prompt_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["messages"][0]["content"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Usage each echoed completion reports.
pub const ECHO_USAGE: (u64, u64) = (3, 2);

pub fn echo_body(prompt: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": MODEL,
        "choices": [{"index": 0, "finish_reason": "stop",
            "message": {"role": "assistant", "content": format!("echo: {prompt}")}}],
        "usage": {"prompt_tokens": ECHO_USAGE.0, "completion_tokens": ECHO_USAGE.1,
            "total_tokens": ECHO_USAGE.0 + ECHO_USAGE.1},
    })
    .to_string()
}

pub struct ScriptedUpstream {
    clock: Arc<dyn Clock>,
    script: Mutex<VecDeque<Reply>>,
    calls: Mutex<Vec<Call>>,
    started: watch::Sender<usize>,
    aborted: Arc<AtomicUsize>,
    /// The provider [`MODEL`]'s batch lines go to as provider batches, when set.
    native_provider: Mutex<Option<String>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts the call as aborted unless it answered before being dropped.
struct AbortWatch {
    answered: bool,
    aborted: Arc<AtomicUsize>,
}

impl Drop for AbortWatch {
    fn drop(&mut self) {
        if !self.answered {
            self.aborted.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl ScriptedUpstream {
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            script: Mutex::new(VecDeque::new()),
            calls: Mutex::new(Vec::new()),
            started: watch::channel(0).0,
            aborted: Arc::new(AtomicUsize::new(0)),
            native_provider: Mutex::new(None),
        }
    }

    /// Routes [`MODEL`]'s batch lines to `provider`'s own Batch API (`batch = "native"`).
    pub fn route_batches_natively(&self, provider: &str) {
        *lock(&self.native_provider) = Some(provider.to_owned());
    }

    /// Queues replies for the next calls, in order.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.script).extend(replies);
    }

    pub fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    pub fn call_count(&self) -> usize {
        lock(&self.calls).len()
    }

    /// Calls dropped (cancelled, timed out by the caller, shut down) before they answered.
    pub fn aborted(&self) -> usize {
        self.aborted.load(Ordering::SeqCst)
    }

    /// Returns once at least `n` calls have started.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut started = self.started.subscribe();
        // The sender lives as long as `self`, so this only ends when the count is reached.
        let _ = started.wait_for(|count| *count >= n).await;
    }

    async fn answer(
        reply: Reply,
        body: &Bytes,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        let mut reply = reply;
        loop {
            return match reply {
                Reply::Echo => Ok(Completion {
                    body: echo_body(&prompt_of(body)),
                }),
                Reply::Body(body) => Ok(Completion { body }),
                Reply::Status {
                    status,
                    retry_after,
                    code,
                } => Err(UpstreamError::Status {
                    status,
                    error: code
                        .map(|c| JobError::new("scripted failure", "upstream_test", Some(c))),
                    retry_after,
                    should_retry: None,
                }),
                Reply::Invalid => Err(UpstreamError::InvalidResponse(
                    "expected a chat completion".into(),
                )),
                Reply::Hang(hang, then) => {
                    if tokio::time::timeout(timeout, hang.0.notified())
                        .await
                        .is_err()
                    {
                        return Err(UpstreamError::Timeout);
                    }
                    reply = *then;
                    continue;
                }
            };
        }
    }
}

#[async_trait]
impl Upstream for ScriptedUpstream {
    fn routes(&self, model: &str) -> bool {
        model == MODEL
    }

    fn batch_route(&self, model: &str) -> Option<prism_core::batches::modes::BatchRoute> {
        let provider = lock(&self.native_provider)
            .clone()
            .filter(|_| model == MODEL)?;
        Some(prism_core::batches::modes::BatchRoute {
            provider,
            mode: prism_core::batches::modes::BatchMode::Native,
            flex_fallback: prism_core::batches::modes::FlexFallback::default(),
        })
    }

    async fn complete(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<Completion, UpstreamError> {
        let reply = lock(&self.script).pop_front().unwrap_or(Reply::Echo);
        lock(&self.calls).push(Call {
            model: model.to_owned(),
            body: body.clone(),
            at: self.clock.now(),
        });
        self.started.send_modify(|count| *count += 1);
        let mut watch = AbortWatch {
            answered: false,
            aborted: Arc::clone(&self.aborted),
        };
        let answer = Self::answer(reply, &body, timeout).await;
        watch.answered = true;
        answer
    }

    async fn relay(
        &self,
        _endpoint: prism_core::ApiEndpoint,
        model: &str,
        _body: Bytes,
    ) -> Result<Relay, UpstreamError> {
        // The sync relay path lives in prism-http; core's orchestration never relays.
        Err(UpstreamError::NoRoute(model.to_owned()))
    }
}

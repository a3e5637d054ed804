//! One synchronous invocation through the runtime emulator's Invoke API, failing as Lambda's
//! does when the function's process dies mid-invocation or the function times out.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::functions::Supervisor;

/// Why an invocation has no usable answer: Lambda's poller then leaves the batch to the queue.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function's process died during the invocation")]
    Died,
    #[error("the function did not answer within its timeout")]
    TimedOut,
    #[error("the invoke call failed: {0}")]
    Transport(String),
    #[error("the function answered status {status}: {body}")]
    Function { status: u16, body: String },
    #[error("the function's answer is not JSON: {0}")]
    NotJson(String),
    #[error("the local stack is stopping; the invocation was abandoned")]
    Stopped,
}

/// Posts events to one function.
#[derive(Clone)]
pub struct Invoker {
    http: reqwest::Client,
    url: String,
    function: Arc<Supervisor>,
    /// The stack's stop: an invocation in flight is abandoned then, because the function's
    /// processes are being ended and would never answer it.
    stop: CancellationToken,
}

impl Invoker {
    pub fn new(
        http: reqwest::Client,
        url: String,
        function: Arc<Supervisor>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            http,
            url,
            function,
            stop,
        }
    }

    pub fn function(&self) -> &Supervisor {
        &self.function
    }

    /// Invokes with `event` and returns the function's JSON answer.
    pub async fn invoke(&self, event: &Value) -> Result<Value, InvokeError> {
        let died = self.function.death();
        let timeout = self.function.plan().timeout + Duration::from_secs(5);
        let call = async {
            let response = self
                .http
                .post(&self.url)
                .json(event)
                .send()
                .await
                .map_err(|e| InvokeError::Transport(e.to_string()))?;
            let status = response.status().as_u16();
            let body = response
                .text()
                .await
                .map_err(|e| InvokeError::Transport(e.to_string()))?;
            if status != 200 {
                return Err(InvokeError::Function { status, body });
            }
            serde_json::from_str(&body).map_err(|_| InvokeError::NotJson(body))
        };
        tokio::select! {
            answer = call => answer,
            () = died => Err(InvokeError::Died),
            () = self.stop.cancelled() => Err(InvokeError::Stopped),
            () = tokio::time::sleep(timeout) => Err(InvokeError::TimedOut),
        }
    }
}

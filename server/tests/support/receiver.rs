//! A loopback webhook receiver for the suites: records every request (headers, raw body) and
//! answers from a script (a status, or never), 200 once the script is used up; and the
//! official Python SDK's `client.webhooks.unwrap` to verify what it received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Never answers (the request is in flight until the sender gives up or dies).
    Hang,
}

#[derive(Clone, Default)]
struct Shared {
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<VecDeque<Answer>>>,
}

pub struct Receiver {
    pub url: String,
    shared: Shared,
}

impl Receiver {
    pub async fn start(script: Vec<Answer>) -> Receiver {
        let shared = Shared::default();
        shared.script.lock().unwrap().extend(script);
        let state = shared.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    state.received.lock().unwrap().push(Received {
                        headers: headers
                            .iter()
                            .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_owned()))
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    });
                    let answer = state.script.lock().unwrap().pop_front();
                    match answer.unwrap_or(Answer::Status(200)) {
                        Answer::Status(code) => StatusCode::from_u16(code).unwrap(),
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                            StatusCode::OK
                        }
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, shared }
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// What was received about `subject` (a job or batch id).
    pub fn about(&self, subject: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.json()["data"]["id"] == subject)
            .collect()
    }
}

/// Verifies `received` with the official SDK (`client.webhooks.unwrap(body, headers,
/// secret=...)`, openai in .venv) and returns the event it parsed, as a dict. Panics when the
/// SDK refuses the signature.
pub fn sdk_unwrap(received: &Received, secret: &str) -> Value {
    let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let input = json!({
        "body": received.body,
        "headers": received.headers.iter().cloned().collect::<std::collections::HashMap<_, _>>(),
        "secret": secret,
    });
    let script = r#"
import json, sys
from openai import OpenAI
d = json.loads(sys.stdin.read())
event = OpenAI(api_key="unused").webhooks.unwrap(d["body"], d["headers"], secret=d["secret"])
out = event.to_dict() if hasattr(event, "to_dict") else dict(event)
print(json.dumps(out))
"#;
    let mut child = std::process::Command::new(python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the SDK refused the webhook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

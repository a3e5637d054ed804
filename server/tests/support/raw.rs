//! HTTP over a bare socket, for requests a well-behaved client library refuses to send (bytes
//! that are not UTF-8 in headers and paths, repeated headers, half-sent requests) and for
//! answers read exactly as the server wrote them.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Env;

/// A response read off the socket as sent.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts OpenAI's error shape with `status`, and returns the `error` object.
    pub fn openai_error(&self, status: u16, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {self:?}");
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{what}: not JSON: {self:?}"
        );
        let body: Value = serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {self:?}"));
        let error = body["error"].clone();
        assert!(error["message"].is_string(), "{what}: {body}");
        assert!(error["type"].is_string(), "{what}: {body}");
        let fields = error.as_object().unwrap();
        assert!(
            fields.contains_key("param") && fields.contains_key("code"),
            "{what}: {body}"
        );
        error
    }
}

pub fn parse_response(bytes: &[u8]) -> Option<Raw> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = bytes[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// The payload of a chunked body (some front ends, cargo-lambda's among them, send answers so).
fn dechunk(mut bytes: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        bytes = &bytes[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(bytes.get(..size)?);
        bytes = bytes.get(size + 2..)?;
    }
}

/// `host:port` of the server under test.
pub fn address(env: &Env) -> String {
    let rest = env.base().trim_start_matches("http://");
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The path the server's routes sit under (the Lambda front's function URL has one).
fn base_path(env: &Env) -> String {
    let rest = env.base().trim_start_matches("http://");
    rest.find('/').map_or_else(String::new, |at| {
        rest[at..].trim_end_matches('/').to_owned()
    })
}

/// Sends `request` as is (the caller ends it with `Connection: close`) and reads the answer, to
/// its end by its framing or to the end of the connection (a front end may keep it open).
pub async fn raw(env: &Env, request: &[u8]) -> Raw {
    let mut stream = TcpStream::connect(address(env)).await.unwrap();
    // The server may answer and close before reading everything (a refused header): a failed
    // write is then expected, and the answer is still read.
    let _ = stream.write_all(request).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buffer = [0u8; 16 * 1024];
        while !is_complete(&answer) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    parse_response(&answer)
        .unwrap_or_else(|| panic!("no HTTP answer: {:?}", String::from_utf8_lossy(&answer)))
}

/// Whether `bytes` hold a whole response by its own framing.
fn is_complete(bytes: &[u8]) -> bool {
    let Some(end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let body = &bytes[end + 4..];
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .is_some_and(|length| body.len() >= length)
}

/// A bodiless request; `auth` is whole header lines (`Authorization: ...\r\n`) or nothing.
pub async fn raw_get(env: &Env, method: &str, target: &str, auth: &str) -> Raw {
    raw_request(env, method, target, auth.as_bytes(), &[], b"").await
}

/// Any request: `head` is extra header lines, each ending in CRLF, sent as bytes; the body's
/// `Content-Length` is added.
pub async fn raw_request(
    env: &Env,
    method: &str,
    target: &str,
    head: &[u8],
    content_type: &[u8],
    body: &[u8],
) -> Raw {
    let target = format!("{}{target}", base_path(env));
    let mut request =
        format!("{method} {target} HTTP/1.1\r\nHost: prism\r\nConnection: close\r\n").into_bytes();
    request.extend_from_slice(head);
    if !content_type.is_empty() {
        request.extend_from_slice(b"Content-Type: ");
        request.extend_from_slice(content_type);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    request.extend_from_slice(body);
    raw(env, &request).await
}

pub fn bearer(key: &str) -> String {
    format!("Authorization: Bearer {key}\r\n")
}

/// A JSON POST as tenant alpha with extra headers whose values are raw bytes.
pub async fn post_raw(env: &Env, path: &str, headers: &[(&str, &[u8])], body: &Value) -> Raw {
    let mut head = bearer(&env.alpha).into_bytes();
    for (name, value) in headers {
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
    }
    raw_request(
        env,
        "POST",
        path,
        &head,
        b"application/json",
        body.to_string().as_bytes(),
    )
    .await
}

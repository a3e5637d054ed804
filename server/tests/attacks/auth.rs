//! Authentication variants on every route family: each wrong credential is a JSON 401 with
//! `invalid_api_key` (never a 5xx), and none of them creates anything or calls the upstream.

use std::time::Duration;

use prism_http::DEFAULT_KEY_CACHE_TTL;
use serde_json::json;

use crate::everything_listed;
use crate::support::raw::{bearer, raw_request};
use crate::support::{
    Setup, chat_body, create_key_on, eventually, revoke_key_on, rfc3339_in, start,
};

/// A request that would do work if it were let in.
struct Call {
    method: &'static str,
    path: &'static str,
    /// Header lines besides the credential, each ending in CRLF.
    head: &'static [u8],
    content_type: &'static [u8],
    body: Vec<u8>,
}

fn call(method: &'static str, path: &'static str) -> Call {
    Call {
        method,
        path,
        head: b"",
        content_type: b"",
        body: Vec::new(),
    }
}

fn posting(path: &'static str, content_type: &'static [u8], body: impl Into<Vec<u8>>) -> Call {
    Call {
        content_type,
        body: body.into(),
        ..call("POST", path)
    }
}

/// One call of each route family, reads and writes.
fn every_route_family() -> Vec<Call> {
    const JSON: &[u8] = b"application/json";
    let chat = chat_body("gpt-auth", "secret prompt").to_string();
    let scheduled =
        json!({"scheduled_at": rfc3339_in(3_600_000), "request": chat_body("gpt-auth", "x")});
    let batch = crate::batch_body("file-0123456789abcdef01234567");
    let upload = b"--XyZ\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jsonl\"\r\n\r\n{}\n\r\n--XyZ--\r\n";
    vec![
        posting("/v1/chat/completions", JSON, chat.clone()),
        Call {
            head: b"x-prism-async: true\r\n",
            ..posting("/v1/chat/completions", JSON, chat)
        },
        call("GET", "/v1/async"),
        call("GET", "/v1/async/job_01m8fjznbgbn54wfrbn0pv7xk8"),
        call("DELETE", "/v1/async/job_01m8fjznbgbn54wfrbn0pv7xk8"),
        posting("/v1/scheduled", JSON, scheduled.to_string()),
        call("GET", "/v1/scheduled"),
        call("DELETE", "/v1/scheduled/sched_01m8fjznbgbn54wfrbn0pv7xk8"),
        posting(
            "/v1/files",
            b"multipart/form-data; boundary=XyZ",
            upload.to_vec(),
        ),
        call("GET", "/v1/files"),
        call("GET", "/v1/files/file-0123456789abcdef01234567/content"),
        call("DELETE", "/v1/files/file-0123456789abcdef01234567"),
        posting("/v1/batches", JSON, batch.to_string()),
        call("GET", "/v1/batches"),
        call(
            "POST",
            "/v1/batches/batch_01m8fjznbgbn54wfrbn0pv7xk8/cancel",
        ),
    ]
}

/// `key` with its last character changed: the right shape, and nobody's.
fn altered(key: &str) -> String {
    let mut other = key.to_owned();
    let last = other.pop().unwrap();
    other.push(if last == 'a' { 'b' } else { 'a' });
    other
}

/// Variants the Lambda front rewrites before Prism sees them: a function URL joins repeated
/// headers into one (cargo-lambda's keeps one of them), and header bytes that are not UTF-8
/// cannot travel in its JSON event. On `prism serve` Prism reads them as sent.
const SHAPED_BY_THE_LAMBDA_FRONT: &[&str] = &[
    "two headers",
    "two tenants' headers",
    "latin-1 byte",
    "invalid utf-8",
];

#[tokio::test]
async fn every_wrong_credential_is_a_json_401_on_every_route_family_and_does_nothing() {
    let env = start(Setup::default()).await;
    let key = env.alpha.clone();
    let revoked = create_key_on(&env.backend, &env.data_dir(), "gamma").await;
    revoke_key_on(&env.backend, &env.data_dir(), &revoked).await;
    let header = |value: &[u8]| [b"Authorization: ".as_slice(), value, b"\r\n"].concat();
    let variants: Vec<(&str, Vec<u8>)> = vec![
        ("no header", Vec::new()),
        ("basic", header(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l")),
        ("token scheme", header(format!("Token {key}").as_bytes())),
        ("no scheme", header(key.as_bytes())),
        ("empty bearer", header(b"Bearer ")),
        ("bearer alone", header(b"Bearer")),
        ("unknown key", header(b"Bearer sk-prism-nope")),
        (
            "altered key",
            header(format!("Bearer {}", altered(&key)).as_bytes()),
        ),
        ("key and more", header(format!("Bearer {key}x").as_bytes())),
        (
            "key cut short",
            header(format!("Bearer {}", &key[..key.len() - 1]).as_bytes()),
        ),
        (
            "upper-case key",
            header(format!("Bearer {}", key.to_uppercase()).as_bytes()),
        ),
        (
            "key then a word",
            header(format!("Bearer {key} extra").as_bytes()),
        ),
        (
            "two keys in one",
            header(format!("Bearer {key}, Bearer {key}").as_bytes()),
        ),
        (
            "revoked key",
            header(format!("Bearer {revoked}").as_bytes()),
        ),
        (
            "two headers",
            [
                header(format!("Bearer {key}").as_bytes()),
                header(format!("Bearer {key}").as_bytes()),
            ]
            .concat(),
        ),
        (
            "two tenants' headers",
            [
                header(format!("Bearer {key}").as_bytes()),
                header(format!("Bearer {}", env.beta).as_bytes()),
            ]
            .concat(),
        ),
        ("utf-8 key", header("Bearer sk-prism-cl\u{e9}".as_bytes())),
        ("latin-1 byte", header(b"Bearer sk-prism-\xe9")),
        ("invalid utf-8", header(b"Bearer \xff\xfe\xfd")),
        (
            "64 KB key",
            header(format!("Bearer sk-prism-{}", "k".repeat(64 * 1024)).as_bytes()),
        ),
        (
            "other header",
            format!("X-Api-Key: {key}\r\nProxy-Authorization: Bearer {key}\r\n").into_bytes(),
        ),
    ];
    for (what, auth) in &variants {
        if env.backend.is_lambda() && SHAPED_BY_THE_LAMBDA_FRONT.contains(what) {
            continue;
        }
        for call in every_route_family() {
            let head = [auth.as_slice(), call.head].concat();
            let answer = raw_request(
                &env,
                call.method,
                call.path,
                &head,
                call.content_type,
                &call.body,
            )
            .await;
            let what = format!("{what}: {} {}", call.method, call.path);
            let error = answer.openai_error(401, &what);
            assert_eq!(error["code"], "invalid_api_key", "{what}");
            assert_eq!(error["type"], "invalid_request_error", "{what}");
        }
    }
    // A key in the query string is not a credential.
    let answer = raw_request(
        &env,
        "GET",
        &format!("/v1/async?api_key={key}"),
        b"",
        b"",
        b"",
    )
    .await;
    answer.openai_error(401, "query key");

    // Whitespace around the key is not part of it (RFC 9110 trims it), and the scheme is
    // case-insensitive: these are alpha's key.
    for (what, auth) in [
        (
            "trailing spaces",
            header(format!("Bearer {key}   ").as_bytes()),
        ),
        ("trailing tab", header(format!("Bearer {key}\t").as_bytes())),
        ("two spaces", header(format!("Bearer  {key}").as_bytes())),
        (
            "lower-case scheme",
            header(format!("bearer {key}").as_bytes()),
        ),
    ] {
        let answer = raw_request(&env, "GET", "/v1/async", &auth, b"", b"").await;
        assert_eq!(answer.status, 200, "{what}: {answer:?}");
    }

    assert_eq!(
        everything_listed(&env, &env.alpha).await,
        Vec::<String>::new()
    );
    assert_eq!(
        everything_listed(&env, &env.beta).await,
        Vec::<String>::new()
    );
    assert_eq!(env.mock.stats(), Default::default(), "no upstream call");
}

/// Header bytes HTTP itself forbids (NUL, a bare line feed inside the value, a folded line) are
/// refused by the HTTP parser before Prism sees them. Whatever answers, it is a 4xx, and nothing
/// gets in.
#[tokio::test]
async fn a_credential_http_cannot_carry_is_refused_with_a_4xx() {
    let env = start(Setup::default()).await;
    let key = env.alpha.clone();
    for (what, auth) in [
        ("nul in key", format!("Authorization: Bearer {key}\0\r\n")),
        (
            "line feed after key",
            format!("Authorization: Bearer {key}\n\r\n"),
        ),
        ("folded key", format!("Authorization: Bearer\r\n {key}\r\n")),
    ] {
        let body = chat_body("gpt-auth", "x").to_string();
        let answer = raw_request(
            &env,
            "POST",
            "/v1/chat/completions",
            [auth.as_bytes(), b"x-prism-async: true\r\n"]
                .concat()
                .as_slice(),
            b"application/json",
            body.as_bytes(),
        )
        .await;
        assert!((400..500).contains(&answer.status), "{what}: {answer:?}");
    }
    assert_eq!(
        everything_listed(&env, &env.alpha).await,
        Vec::<String>::new()
    );
    assert_eq!(env.mock.stats(), Default::default(), "no upstream call");
}

/// A key already verified (and cached) stops working once revoked, within the cache's time.
#[tokio::test]
async fn a_revoked_key_stops_working_within_the_key_cache_ttl() {
    let env = start(Setup::default()).await;
    let key = create_key_on(&env.backend, &env.data_dir(), "gamma").await;
    assert_eq!(env.get(&key, "/v1/async").await.status(), 200);
    revoke_key_on(&env.backend, &env.data_dir(), &key).await;
    let revoked = tokio::time::Instant::now();
    eventually(
        Duration::from_secs(20),
        "the revoked key is refused",
        || async { env.get(&key, "/v1/async").await.status() == 401 },
    )
    .await;
    // Each API instance has its own cache (on Lambda there are several), and one that verified
    // the key before the revocation trusts it for up to the TTL: the first 401 may come from
    // another instance. The promise is "within the TTL", so every request after it must fail.
    tokio::time::sleep_until(revoked + DEFAULT_KEY_CACHE_TTL + Duration::from_millis(500)).await;
    let refused = crate::support::raw::raw_get(&env, "GET", "/v1/scheduled", &bearer(&key)).await;
    assert_eq!(
        refused.openai_error(401, "revoked")["code"],
        "invalid_api_key"
    );
    let submit = env.chat(&key, chat_body("gpt-auth", "x"), true).await;
    assert_eq!(submit.status(), 401);
    assert_eq!(env.mock.stats(), Default::default(), "no upstream call");
    // Other tenants' keys are unaffected.
    assert_eq!(env.get(&env.alpha, "/v1/async").await.status(), 200);
}

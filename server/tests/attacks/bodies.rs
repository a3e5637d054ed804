//! Malformed bodies, per endpoint: each is an OpenAI-shaped 4xx that names the parameter where
//! OpenAI would, never a 5xx, and nothing is created or sent upstream. Duplicate keys, the
//! filename cap and the header checks are in `hardening.rs`.

use serde_json::{Value, json};

use crate::everything_listed;
use crate::support::raw::{bearer, raw_request};
use crate::support::{Env, Setup, chat_body, rfc3339_in, start};

/// One malformed request: what it is, its content type, its body, and the answer's status and
/// `param` (`None`: the error is about the body as a whole, and `param` is null).
struct Bad {
    what: String,
    content_type: &'static [u8],
    body: Vec<u8>,
    status: u16,
    param: Option<&'static str>,
    /// Checked when given.
    code: Option<&'static str>,
}

fn bad(what: &str, body: impl Into<Vec<u8>>, param: Option<&'static str>) -> Bad {
    Bad {
        what: what.to_owned(),
        content_type: b"application/json",
        body: body.into(),
        status: 400,
        param,
        code: None,
    }
}

/// A body that is not one JSON object: `invalid_json`, about the body as a whole.
fn not_json(what: &str, body: impl Into<Vec<u8>>) -> Bad {
    Bad {
        code: Some("invalid_json"),
        ..bad(what, body, None)
    }
}

fn json_bad(what: &str, body: &Value, param: Option<&'static str>) -> Bad {
    bad(what, body.to_string(), param)
}

/// `[[[…]]]` nested `depth` times.
fn depth_bomb(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Bodies that are wrong whatever the endpoint wants.
fn not_a_json_object() -> Vec<Bad> {
    let mut with_nul = br#"{"model":"m","#.to_vec();
    with_nul.push(0);
    with_nul.extend_from_slice(br#""messages":[]}"#);
    let mut bom = "\u{feff}".as_bytes().to_vec();
    bom.extend_from_slice(chat_body("m", "x").to_string().as_bytes());
    vec![
        not_json("empty body", ""),
        not_json("not JSON", "hello"),
        not_json("truncated JSON", r#"{"model": "m", "messages": [{"#),
        not_json("a JSON array", "[1, 2]"),
        not_json("a JSON string", r#""model""#),
        not_json("JSON null", "null"),
        not_json("a number", "12"),
        not_json("a depth bomb", depth_bomb(100_000)),
        not_json("a byte-order mark", bom),
        not_json("a NUL byte", with_nul),
        not_json("invalid UTF-8", b"{\"model\": \"m\xff\xfe\"}".to_vec()),
        not_json("two objects", "{}{}"),
        Bad {
            content_type: b"application/x-www-form-urlencoded",
            ..not_json("a form body", "model=m&messages=hi")
        },
    ]
}

fn chat_cases() -> Vec<Bad> {
    let user = json!([{"role": "user", "content": "x"}]);
    let mut nul_in_string = br#"{"model":"m"#.to_vec();
    nul_in_string.push(0);
    nul_in_string.extend_from_slice(br#"","messages":[{"role":"user","content":"x"}]}"#);
    let mut cases = not_a_json_object();
    cases.extend([
        json_bad("no model", &json!({"messages": user}), Some("model")),
        json_bad(
            "model a number",
            &json!({"model": 4, "messages": user}),
            Some("model"),
        ),
        json_bad(
            "model empty",
            &json!({"model": "", "messages": user}),
            Some("model"),
        ),
        json_bad(
            "model null",
            &json!({"model": null, "messages": user}),
            Some("model"),
        ),
        bad(
            "model a huge number",
            format!(r#"{{"model": 1e999, "messages": {user}}}"#),
            Some("model"),
        ),
        json_bad("no messages", &json!({"model": "m"}), Some("messages")),
        json_bad(
            "messages empty",
            &json!({"model": "m", "messages": []}),
            Some("messages"),
        ),
        json_bad(
            "messages an object",
            &json!({"model": "m", "messages": {"role": "user"}}),
            Some("messages"),
        ),
        json_bad(
            "messages a string",
            &json!({"model": "m", "messages": "hi"}),
            Some("messages"),
        ),
        json_bad(
            "stream a string",
            &json!({"model": "m", "messages": user, "stream": "yes"}),
            Some("stream"),
        ),
        bad("a NUL inside a string", nul_in_string, None),
        bad(
            "a depth bomb in a message",
            format!(
                r#"{{"model": "m", "messages": [{{"role": "user", "content": {}}}]}}"#,
                depth_bomb(100_000)
            ),
            None,
        ),
        bad(
            "invalid UTF-8 in a message",
            b"{\"model\": \"m\", \"messages\": [{\"role\": \"user\", \"content\": \"\xc3\x28\"}]}"
                .to_vec(),
            None,
        ),
    ]);
    cases
}

fn scheduled_cases() -> Vec<Bad> {
    let request = chat_body("gpt-bad", "x");
    let at = rfc3339_in(3_600_000);
    let with = |scheduled_at: Value| json!({"scheduled_at": scheduled_at, "request": request});
    let seventeen: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut cases = not_a_json_object();
    cases.extend([
        Bad {
            code: Some("unknown_parameter"),
            ..json_bad("an unknown parameter", &json!({"scheduled_at": at, "request": request, "priority": 1}), None)
        },
        json_bad("no scheduled_at", &json!({"request": request}), Some("scheduled_at")),
        json_bad("scheduled_at null", &with(Value::Null), Some("scheduled_at")),
        json_bad("scheduled_at a number", &with(json!(1_775_379_600)), Some("scheduled_at")),
        json_bad("scheduled_at a word", &with(json!("tomorrow")), Some("scheduled_at")),
        json_bad("scheduled_at empty", &with(json!("")), Some("scheduled_at")),
        json_bad("scheduled_at without offset", &with(json!("2030-04-05T09:00:00")), Some("scheduled_at")),
        json_bad("scheduled_at with a space", &with(json!("2030-04-05 09:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at month 13", &with(json!("2030-13-05T09:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at February 30", &with(json!("2030-02-30T09:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at hour 24", &with(json!("2030-04-05T24:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at offset +25:00", &with(json!("2030-04-05T09:00:00+25:00")), Some("scheduled_at")),
        json_bad("scheduled_at year 275760", &with(json!("+275760-09-13T00:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at year 9999", &with(json!("9999-12-31T23:59:59Z")), Some("scheduled_at")),
        json_bad("scheduled_at in 2001", &with(json!("2001-01-01T00:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at year 0", &with(json!("0000-01-01T00:00:00Z")), Some("scheduled_at")),
        json_bad("scheduled_at a digit string", &with(json!("1775379600")), Some("scheduled_at")),
        json_bad("scheduled_at 1000 fraction digits", &with(json!(format!("2030-04-05T09:00:00.{}Z", "1".repeat(1000)))), Some("scheduled_at")),
        json_bad("no request", &json!({"scheduled_at": at}), Some("request")),
        json_bad("request null", &json!({"scheduled_at": at, "request": null}), Some("request")),
        json_bad("request a string", &json!({"scheduled_at": at, "request": "hi"}), Some("request")),
        json_bad("request without model", &json!({"scheduled_at": at, "request": {"messages": [{"role": "user", "content": "x"}]}}), Some("request.model")),
        json_bad("request without messages", &json!({"scheduled_at": at, "request": {"model": "m"}}), Some("request.messages")),
        json_bad("request streaming", &json!({"scheduled_at": at, "request": {"model": "m", "stream": true, "messages": [{"role": "user", "content": "x"}]}}), Some("request.stream")),
        bad("request a depth bomb", format!(r#"{{"scheduled_at": "{at}", "request": {}}}"#, depth_bomb(100_000)), None),
        json_bad("metadata an array", &json!({"scheduled_at": at, "request": request, "metadata": ["a"]}), Some("metadata")),
        json_bad("metadata 17 keys", &json!({"scheduled_at": at, "request": request, "metadata": seventeen}), Some("metadata")),
        json_bad("metadata a long value", &json!({"scheduled_at": at, "request": request, "metadata": {"k": "v".repeat(513)}}), Some("metadata")),
        json_bad("metadata a long key", &json!({"scheduled_at": at, "request": request, "metadata": {"k".repeat(65): "v"}}), Some("metadata")),
        json_bad("metadata a number value", &json!({"scheduled_at": at, "request": request, "metadata": {"k": 1}}), Some("metadata")),
        json_bad("metadata nested", &json!({"scheduled_at": at, "request": request, "metadata": {"k": {"a": "b"}}}), Some("metadata")),
    ]);
    cases
}

fn batch_cases(file: &str) -> Vec<Bad> {
    let body = |input: Value, endpoint: Value, window: Value| json!({"input_file_id": input, "endpoint": endpoint, "completion_window": window});
    let ok = || body(json!(file), json!("/v1/chat/completions"), json!("24h"));
    let with = |name: &str, value: Value| {
        let mut b = ok();
        b[name] = value;
        b
    };
    let seventeen: serde_json::Map<String, Value> =
        (0..17).map(|i| (format!("k{i}"), json!("v"))).collect();
    let mut cases = not_a_json_object();
    cases.extend([
        Bad {
            code: Some("unknown_parameter"),
            ..json_bad("an unknown parameter", &with("priority", json!(1)), None)
        },
        json_bad(
            "no input_file_id",
            &json!({"endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            Some("input_file_id"),
        ),
        json_bad(
            "input_file_id a number",
            &with("input_file_id", json!(7)),
            Some("input_file_id"),
        ),
        json_bad(
            "no endpoint",
            &json!({"input_file_id": file, "completion_window": "24h"}),
            Some("endpoint"),
        ),
        json_bad(
            "endpoint images",
            &with("endpoint", json!("/v1/images/generations")),
            Some("endpoint"),
        ),
        json_bad(
            "endpoint with a slash",
            &with("endpoint", json!("/v1/chat/completions/")),
            Some("endpoint"),
        ),
        json_bad(
            "endpoint a number",
            &with("endpoint", json!(1)),
            Some("endpoint"),
        ),
        json_bad(
            "no completion_window",
            &json!({"input_file_id": file, "endpoint": "/v1/chat/completions"}),
            Some("completion_window"),
        ),
        json_bad(
            "completion_window 48h",
            &with("completion_window", json!("48h")),
            Some("completion_window"),
        ),
        json_bad(
            "completion_window 24",
            &with("completion_window", json!(24)),
            Some("completion_window"),
        ),
        json_bad(
            "completion_window empty",
            &with("completion_window", json!("")),
            Some("completion_window"),
        ),
        json_bad(
            "metadata 17 keys",
            &with("metadata", Value::Object(seventeen)),
            Some("metadata"),
        ),
        json_bad(
            "metadata a long value",
            &with("metadata", json!({"k": "v".repeat(513)})),
            Some("metadata"),
        ),
        json_bad(
            "metadata a string",
            &with("metadata", json!("m")),
            Some("metadata"),
        ),
        json_bad(
            "output_expires_after too short",
            &with(
                "output_expires_after",
                json!({"anchor": "created_at", "seconds": 60}),
            ),
            Some("output_expires_after"),
        ),
        json_bad(
            "output_expires_after a huge number",
            &with(
                "output_expires_after",
                json!({"anchor": "created_at", "seconds": 1e300}),
            ),
            Some("output_expires_after"),
        ),
        json_bad(
            "output_expires_after another anchor",
            &with(
                "output_expires_after",
                json!({"anchor": "now", "seconds": 7200}),
            ),
            Some("output_expires_after"),
        ),
    ]);
    cases
}

/// A multipart body of `parts` `(name, filename, bytes)`, with boundary `XyZ`.
fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, bytes) in parts {
        body.extend_from_slice(b"--XyZ\r\nContent-Disposition: form-data; name=\"");
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(b"\"");
        if let Some(filename) = filename {
            body.extend_from_slice(format!("; filename=\"{filename}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"--XyZ--\r\n");
    body
}

fn upload_cases() -> Vec<Bad> {
    const FORM: &[u8] = b"multipart/form-data; boundary=XyZ";
    let line = crate::batch_line("a", "gpt-bad", "x");
    let input = line.as_bytes();
    let form = |what: &str, body: Vec<u8>, param: Option<&'static str>| Bad {
        content_type: FORM,
        ..bad(what, body, param)
    };
    let mut truncated = multipart(&[
        ("purpose", None, b"batch"),
        ("file", Some("a.jsonl"), input),
    ]);
    truncated.truncate(truncated.len() - 12);
    vec![
        json_bad(
            "a JSON body",
            &json!({"purpose": "batch", "file": "x"}),
            Some("file"),
        ),
        Bad {
            content_type: b"multipart/form-data",
            ..bad(
                "multipart without a boundary",
                multipart(&[("purpose", None, b"batch")]),
                Some("file"),
            )
        },
        Bad {
            content_type: b"multipart/form-data; boundary=Other",
            ..bad(
                "the wrong boundary",
                multipart(&[
                    ("purpose", None, b"batch"),
                    ("file", Some("a.jsonl"), input),
                ]),
                Some("file"),
            )
        },
        form("an empty body", Vec::new(), Some("file")),
        form("garbage", b"hello".to_vec(), Some("file")),
        form("no closing boundary", truncated, Some("file")),
        form(
            "no file",
            multipart(&[("purpose", None, b"batch")]),
            Some("file"),
        ),
        form(
            "no purpose",
            multipart(&[("file", Some("a.jsonl"), input)]),
            Some("purpose"),
        ),
        form(
            "purpose fine-tune",
            multipart(&[
                ("purpose", None, b"fine-tune"),
                ("file", Some("a.jsonl"), input),
            ]),
            Some("purpose"),
        ),
        form(
            "purpose empty",
            multipart(&[("purpose", None, b""), ("file", Some("a.jsonl"), input)]),
            Some("purpose"),
        ),
        form(
            "purpose not UTF-8",
            multipart(&[("purpose", None, b"\xff"), ("file", Some("a.jsonl"), input)]),
            Some("purpose"),
        ),
        form(
            "two files",
            multipart(&[
                ("purpose", None, b"batch"),
                ("file", Some("a.jsonl"), input),
                ("file", Some("b.jsonl"), input),
            ]),
            Some("file"),
        ),
        form(
            "an empty file",
            multipart(&[("purpose", None, b"batch"), ("file", Some("a.jsonl"), b"")]),
            Some("file"),
        ),
        form(
            "a file not UTF-8",
            multipart(&[
                ("purpose", None, b"batch"),
                ("file", Some("a.jsonl"), b"\xff\xfe\n"),
            ]),
            Some("file"),
        ),
        form(
            "expiry seconds a word",
            multipart(&[
                ("purpose", None, b"batch"),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"soon"),
                ("file", Some("a.jsonl"), input),
            ]),
            Some("expires_after[seconds]"),
        ),
        form(
            "expiry seconds huge",
            multipart(&[
                ("purpose", None, b"batch"),
                ("expires_after[anchor]", None, b"created_at"),
                ("expires_after[seconds]", None, b"99999999999999999999999"),
                ("file", Some("a.jsonl"), input),
            ]),
            Some("expires_after[seconds]"),
        ),
        form(
            "expiry another anchor",
            multipart(&[
                ("purpose", None, b"batch"),
                ("expires_after[anchor]", None, b"now"),
                ("expires_after[seconds]", None, b"3600"),
                ("file", Some("a.jsonl"), input),
            ]),
            Some("expires_after[anchor]"),
        ),
    ]
}

/// Sends every case to `path` (with `extra` header lines) and checks each answer.
async fn refuses_each(env: &Env, path: &str, extra: &[u8], cases: &[Bad]) -> usize {
    let head = [bearer(&env.alpha).as_bytes(), extra].concat();
    for case in cases {
        // The Lambda front (cargo-lambda's function URL) answers a text body that is not UTF-8
        // with its own plain-text 500 before Prism sees it.
        if env.backend.is_lambda() && std::str::from_utf8(&case.body).is_err() {
            continue;
        }
        let answer = raw_request(env, "POST", path, &head, case.content_type, &case.body).await;
        let what = format!("POST {path} with {}", case.what);
        let error = answer.openai_error(case.status, &what);
        assert_eq!(error["type"], "invalid_request_error", "{what}: {error}");
        match case.param {
            Some(param) => assert_eq!(error["param"], param, "{what}: {error}"),
            None => assert!(error["param"].is_null(), "{what}: {error}"),
        }
        if let Some(code) = case.code {
            assert_eq!(error["code"], code, "{what}: {error}");
        }
    }
    cases.len()
}

#[tokio::test]
async fn malformed_bodies_are_openai_shaped_4xx_naming_the_param_and_create_nothing() {
    let env = start(Setup::default()).await;
    // A real input file, so that batch cases fail on what they get wrong and not on the file.
    let file = env
        .upload_batch_file(
            &env.alpha,
            crate::batch_line("a", "gpt-bad", "x").as_bytes(),
        )
        .await;
    let mut checked = 0;
    checked += refuses_each(&env, "/v1/chat/completions", b"", &chat_cases()).await;
    checked += refuses_each(
        &env,
        "/v1/chat/completions",
        b"x-prism-async: true\r\n",
        &chat_cases(),
    )
    .await;
    checked += refuses_each(&env, "/v1/scheduled", b"", &scheduled_cases()).await;
    checked += refuses_each(&env, "/v1/batches", b"", &batch_cases(&file)).await;
    checked += refuses_each(&env, "/v1/files", b"", &upload_cases()).await;
    assert!(checked > 140, "{checked} cases");

    assert_eq!(everything_listed(&env, &env.alpha).await, vec![file]);
    assert_eq!(env.mock.stats(), Default::default(), "no upstream call");
}

/// A batch over a file nobody has, whatever the id looks like, is a 404 and creates no batch.
#[tokio::test]
async fn a_batch_over_a_missing_file_is_a_404_and_creates_nothing() {
    let env = start(Setup::default()).await;
    for file in [
        "file-0123456789abcdef01234567",
        "not-a-file-id",
        "",
        "file-%00",
        "batch_01m8fjznbgbn54wfrbn0pv7xk8",
    ] {
        let response = env
            .post(&env.alpha, "/v1/batches", &crate::batch_body(file))
            .await;
        assert_eq!(response.status(), 404, "{file:?}");
        let error: Value = response.json().await.unwrap();
        assert_eq!(
            error["error"]["type"], "invalid_request_error",
            "{file:?}: {error}"
        );
    }
    assert_eq!(
        everything_listed(&env, &env.alpha).await,
        Vec::<String>::new()
    );
}

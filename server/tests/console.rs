//! The web console at `/console`: its bundle and headers over real HTTP, and the page itself
//! driven in headless Chromium against a running batch (tests/console/console.mjs; ignored
//! unless asked for, since it needs Chromium and tests/console's node modules, which
//! scripts/test.sh installs).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use support::{Setup, chat_batch_input, chat_body, start};

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

async fn get_without_key(env: &support::Env, path: &str) -> reqwest::Response {
    env.http.get(env.url(path)).send().await.unwrap()
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no {name} header on {}", response.url()))
}

#[tokio::test]
async fn console_is_served_without_a_key_under_a_strict_content_security_policy() {
    let env = start(Setup::default()).await;
    for (path, content_type) in [
        ("/console", "text/html; charset=utf-8"),
        ("/console/app.js", "text/javascript; charset=utf-8"),
        ("/console/app.css", "text/css; charset=utf-8"),
    ] {
        let response = get_without_key(&env, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_eq!(header(&response, "content-security-policy"), CSP, "{path}");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert!(!header(&response, "x-request-id").is_empty());
    }
}

#[tokio::test]
async fn console_redirects_its_trailing_slash_and_answers_unknown_assets_with_a_404() {
    let env = start(Setup::default()).await;
    let no_follow = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let slash = no_follow.get(env.url("/console/")).send().await.unwrap();
    assert_eq!(slash.status(), 308);
    assert_eq!(header(&slash, "location"), "../console");
    let response = get_without_key(&env, "/console/other.js").await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_url");
}

/// The CSP would refuse inline code in the browser; this names the offending text instead.
#[tokio::test]
async fn console_bundle_has_no_inline_script_or_style_and_no_third_party_origin() {
    let env = start(Setup::default()).await;
    let html = get_without_key(&env, "/console")
        .await
        .text()
        .await
        .unwrap();
    let script_tags: Vec<&str> = html.split("<script").skip(1).collect();
    assert_eq!(script_tags.len(), 1, "one script, the bundle");
    for tag in script_tags {
        let open = &tag[..tag.find('>').unwrap()];
        assert!(
            open.contains("src=\"console/app.js\""),
            "inline script: {open}"
        );
        assert!(tag[tag.find('>').unwrap() + 1..].starts_with("</script>"));
    }
    for forbidden in [
        " style=",
        "<style",
        " onclick=",
        " onload=",
        " onsubmit=",
        "javascript:",
    ] {
        assert!(!html.contains(forbidden), "the page holds {forbidden}");
    }
    for path in ["/console", "/console/app.js", "/console/app.css"] {
        let text = get_without_key(&env, path).await.text().await.unwrap();
        // The SVG namespace is a name, not an origin anything is loaded from.
        let origins = text
            .replace("http://www.w3.org/2000/svg", "")
            .matches("://")
            .count();
        assert_eq!(origins, 0, "{path} names another origin");
    }
}

/// The console's downloads: a page that may reach only its own origin asks for the blob store's
/// URL instead of a redirect to it.
#[tokio::test]
async fn file_content_answers_the_blob_stores_url_as_json_when_asked() {
    let env = start(Setup {
        files: "redirect_downloads_above = 100",
        ..Setup::default()
    })
    .await;
    let input = chat_batch_input("big", "console-echo", 4);
    let id = env.upload_batch_file(&env.alpha, input.as_bytes()).await;
    let response = env
        .http
        .get(env.url(&format!("/v1/files/{id}/content")))
        .bearer_auth(&env.alpha)
        .header("x-prism-redirect", "JSON")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = if env.backend.is_aws() || env.backend.is_lambda() {
        assert_eq!(header(&response, "content-type"), "application/json");
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["object"], "file.content_url");
        assert_eq!(answer["id"], id.as_str());
        let url = answer["url"].as_str().unwrap();
        assert!(url.contains("X-Amz-Signature"), "{url}");
        // The URL alone, with no key, serves the bytes.
        reqwest::get(url).await.unwrap().bytes().await.unwrap()
    } else {
        // Local files are served by prism itself, header or not.
        assert_eq!(
            header(&response, "content-type"),
            "application/octet-stream"
        );
        response.bytes().await.unwrap()
    };
    assert_eq!(bytes.as_ref(), input.as_bytes());
}

#[tokio::test]
async fn file_content_refuses_an_x_prism_redirect_other_than_json() {
    let env = start(Setup::default()).await;
    let id = env.upload_batch_file(&env.alpha, b"{}\n").await;
    let response = env
        .http
        .get(env.url(&format!("/v1/files/{id}/content")))
        .bearer_auth(&env.alpha)
        .header("x-prism-redirect", "follow")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"]["param"], "x-prism-redirect");
}

/// Where the browser test's screenshots go: `target/console-screenshots`, next to the binaries.
fn screenshot_dir() -> PathBuf {
    Path::new(support::PRISM)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .join("console-screenshots")
}

#[tokio::test]
#[ignore = "needs Chromium and tests/console's node modules; scripts/test.sh installs both"]
async fn console_in_chromium_shows_batch_progress_cancellations_and_only_its_own_tenant() {
    // One chunk of slow lines two at a time (about 20 s), so the batch is still running when the
    // page first shows it.
    let env = start(Setup {
        batches: "lines_per_chunk = 100\nline_concurrency = 2\ncheckpoint_lines = 1\ncheckpoint_every = \"100ms\"",
        ..Setup::default()
    })
    .await;

    let completed = env
        .submit(&env.alpha, "console-echo", "console shows me on click")
        .await;
    env.wait_for(
        &env.alpha,
        &completed,
        &["completed"],
        Duration::from_secs(30),
    )
    .await;
    let cancelled = env.submit(&env.alpha, "mock-hang", "never answered").await;
    let response = env
        .delete(&env.alpha, &format!("/v1/async/{cancelled}"))
        .await;
    assert_eq!(response.status(), 200);
    let scheduled = env
        .schedule(&env.alpha, "console-echo", "later", 3_600_000)
        .await;

    let mut input = chat_batch_input("slow", "mock-slow-700", 60);
    for (i, model) in ["mock-400", "mock-400", "mock-quota"].iter().enumerate() {
        input.push_str(
            &json!({"custom_id": format!("bad-{i}"), "method": "POST", "url": "/v1/chat/completions",
                    "body": chat_body(model, "refused")})
            .to_string(),
        );
        input.push('\n');
    }
    let batch = env.start_batch(&input).await;

    // Tenant beta's objects, which alpha's console must not show.
    let foreign_job = env.submit(&env.beta, "console-echo", "beta's").await;
    let foreign_input = chat_batch_input("beta", "console-echo", 2);
    let foreign_file = env
        .upload_batch_file(&env.beta, foreign_input.as_bytes())
        .await;
    let response = env
        .post(
            &env.beta,
            "/v1/batches",
            &json!({"input_file_id": foreign_file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let foreign_batch: Value = response.json().await.unwrap();
    let foreign_scheduled = env
        .schedule(&env.beta, "console-echo", "beta's", 3_600_000)
        .await;

    let expect = json!({
        "batch": batch,
        "batch_errors": {"context_length_exceeded": 2, "insufficient_quota": 1},
        "cancelled": cancelled,
        "completed": completed,
        "completed_content": "console shows me on click",
        "scheduled": scheduled,
        "foreign": [foreign_job, foreign_batch["id"], foreign_scheduled],
    });
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = tokio::process::Command::new("node")
        .arg("tests/console/console.mjs")
        .current_dir(&workspace)
        .env("PRISM_URL", env.base())
        .env("PRISM_KEY", &env.alpha)
        .env("CONSOLE_EXPECT", expect.to_string())
        .env("SCREENSHOT_DIR", screenshot_dir())
        .output()
        .await
        .expect("node runs tests/console/console.mjs (scripts/test.sh installs node)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the console's browser checks failed:\n{report}"
    );
    println!("{report}");
}

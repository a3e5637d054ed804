//! Tenant isolation: another tenant's object of any type answers exactly as an unknown id does,
//! is never listed, cannot be reached through a list cursor, and stays untouched.

use serde_json::{Value, json};

use crate::support::{Env, Setup, chat_body, rfc3339_in, start};
use crate::{SOON, batch_body, batch_line, list_ids};

const HOUR_MS: i64 = 3_600_000;

/// The same id with its last character changed: well-formed, and nobody's.
fn unknown_like(id: &str) -> String {
    let mut unknown = id.to_owned();
    let last = unknown.pop().unwrap();
    unknown.push(if last == '0' { '1' } else { '0' });
    unknown
}

/// Status and body of an answer, the id in the body replaced, so that answers about two ids
/// compare equal when they say the same thing.
async fn answer_about(response: reqwest::Response, id: &str) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text.replace(id, "<id>"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, body)
}

/// What B gets for each request on A's `id`: a 404 identical to the one for an id nobody has.
async fn b_gets_what_an_unknown_id_gets(env: &Env, id: &str, requests: &[(&str, &str)]) {
    let unknown = unknown_like(id);
    for (method, template) in requests {
        let send = |id: &str| {
            let url = env.url(&template.replace("{}", id));
            let request = match *method {
                "GET" => env.http.get(url),
                "DELETE" => env.http.delete(url),
                _ => env.http.post(url).json(&json!({})),
            };
            request.bearer_auth(&env.beta).send()
        };
        let theirs = answer_about(send(id).await.unwrap(), id).await;
        let nobodys = answer_about(send(&unknown).await.unwrap(), &unknown).await;
        let what = format!("{method} {template} on another tenant's {id}");
        assert_eq!(theirs.0, 404, "{what}: {theirs:?}");
        assert_eq!(theirs.1["error"]["type"], "invalid_request_error", "{what}");
        assert_eq!(theirs, nobodys, "{what} differs from an unknown id");
    }
}

/// Every object type tenant alpha can own, and its state, for the untouched check.
struct Owned {
    job: String,
    scheduled: String,
    file: String,
    batch: String,
    output_file: String,
    error_file: String,
}

async fn alpha_owns_one_of_everything(env: &Env) -> Owned {
    let job = env.submit(&env.alpha, "gpt-alpha", "alpha's secret").await;
    env.wait_for(&env.alpha, &job, &["completed"], SOON).await;
    let scheduled = env
        .schedule(&env.alpha, "gpt-alpha", "later", HOUR_MS)
        .await;
    let input = batch_line("good", "gpt-alpha", "x") + &batch_line("bad", "mock-400-t1", "y");
    let file = env.upload_batch_file(&env.alpha, input.as_bytes()).await;
    let created = env
        .post(&env.alpha, "/v1/batches", &batch_body(&file))
        .await;
    assert_eq!(created.status(), 200);
    let batch = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = env.wait_for_batch(&batch, &["completed"], SOON).await;
    let output_file = done["output_file_id"].as_str().unwrap().to_owned();
    let error_file = done["error_file_id"].as_str().unwrap().to_owned();
    Owned {
        job,
        scheduled,
        file,
        batch,
        output_file,
        error_file,
    }
}

/// Beta's own objects, made before alpha's so that every one is older than any of alpha's ids
/// (lists are newest first): a cursor taken from alpha's list then has all of them behind it.
async fn beta_owns_some(env: &Env) -> Vec<String> {
    let job = env.submit(&env.beta, "gpt-beta", "beta").await;
    env.wait_for(&env.beta, &job, &["completed"], SOON).await;
    let scheduled = env.schedule(&env.beta, "gpt-beta", "later", HOUR_MS).await;
    let file = env
        .upload_batch_file(&env.beta, batch_line("b", "gpt-beta", "x").as_bytes())
        .await;
    let created = env.post(&env.beta, "/v1/batches", &batch_body(&file)).await;
    assert_eq!(created.status(), 200);
    let batch = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Finished before alpha starts, so that its output file is older than alpha's objects too.
    let done = wait_for_batch_as(env, &env.beta, &batch).await;
    let output = done["output_file_id"].as_str().unwrap().to_owned();
    vec![job, scheduled, file, batch, output]
}

async fn wait_for_batch_as(env: &Env, key: &str, id: &str) -> Value {
    crate::support::eventually(SOON, "beta's batch completes", || async {
        let batch: Value = env
            .get(key, &format!("/v1/batches/{id}"))
            .await
            .json()
            .await
            .unwrap();
        batch["status"] == "completed"
    })
    .await;
    env.get(key, &format!("/v1/batches/{id}"))
        .await
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn another_tenants_objects_of_every_type_answer_as_unknown_ids_and_stay_untouched() {
    let env = start(Setup::default()).await;
    let theirs = beta_owns_some(&env).await;
    let owned = alpha_owns_one_of_everything(&env).await;
    let hits_before = env.mock.stats();

    b_gets_what_an_unknown_id_gets(
        &env,
        &owned.job,
        &[("GET", "/v1/async/{}"), ("DELETE", "/v1/async/{}")],
    )
    .await;
    b_gets_what_an_unknown_id_gets(
        &env,
        &owned.scheduled,
        &[("GET", "/v1/scheduled/{}"), ("DELETE", "/v1/scheduled/{}")],
    )
    .await;
    for file in [&owned.file, &owned.output_file, &owned.error_file] {
        b_gets_what_an_unknown_id_gets(
            &env,
            file,
            &[
                ("GET", "/v1/files/{}"),
                ("GET", "/v1/files/{}/content"),
                ("DELETE", "/v1/files/{}"),
            ],
        )
        .await;
    }
    b_gets_what_an_unknown_id_gets(
        &env,
        &owned.batch,
        &[("GET", "/v1/batches/{}"), ("POST", "/v1/batches/{}/cancel")],
    )
    .await;

    // A batch over alpha's input file (or alpha's output file) is a 404 like an unknown file.
    for file in [&owned.file, &owned.output_file] {
        let with_theirs = env.post(&env.beta, "/v1/batches", &batch_body(file)).await;
        let with_unknown = env
            .post(&env.beta, "/v1/batches", &batch_body(&unknown_like(file)))
            .await;
        let with_theirs = answer_about(with_theirs, file).await;
        let with_unknown = answer_about(with_unknown, &unknown_like(file)).await;
        assert_eq!(with_theirs.0, 404, "{with_theirs:?}");
        assert_eq!(with_theirs, with_unknown);
    }

    // Beta's lists hold beta's objects only, and alpha's ids as cursors reveal nothing more.
    let alphas = [
        &owned.job,
        &owned.scheduled,
        &owned.file,
        &owned.batch,
        &owned.output_file,
        &owned.error_file,
    ];
    for (path, cursor, older) in [
        ("/v1/async", &owned.job, 1),
        ("/v1/scheduled", &owned.scheduled, 1),
        ("/v1/files", &owned.output_file, 2),
        ("/v1/batches", &owned.batch, 1),
    ] {
        for query in [
            "?limit=100".to_owned(),
            format!("?limit=100&after={cursor}"),
            format!("?limit=100&after={}", unknown_like(cursor)),
        ] {
            let listed = list_ids(&env, &env.beta, &format!("{path}{query}")).await;
            for id in &listed {
                assert!(theirs.contains(id), "GET {path}{query} lists {id}");
                assert!(
                    !alphas.contains(&id),
                    "GET {path}{query} lists alpha's {id}"
                );
            }
        }
        // Beta's own older object is behind alpha's cursor, as behind any id that new.
        let behind = list_ids(&env, &env.beta, &format!("{path}?after={cursor}")).await;
        assert_eq!(behind.len(), older, "GET {path}?after={cursor}: {behind:?}");
    }
    let ascending = list_ids(
        &env,
        &env.beta,
        &format!("/v1/files?order=asc&after={}", theirs[2]),
    )
    .await;
    // Newer than beta's input file: beta's output file, and none of alpha's newer files.
    assert_eq!(ascending, vec![theirs[4].clone()]);
    for purpose in ["batch", "batch_output"] {
        for id in list_ids(&env, &env.beta, &format!("/v1/files?purpose={purpose}")).await {
            assert!(theirs.contains(&id), "purpose={purpose} lists {id}");
        }
    }

    // Nothing of alpha's changed, and beta's attempts ran nothing upstream.
    assert_eq!(env.job(&env.alpha, &owned.job).await["status"], "completed");
    assert_eq!(
        env.job(&env.alpha, &owned.scheduled).await["status"],
        "pending"
    );
    let batch: Value = env
        .get(&env.alpha, &format!("/v1/batches/{}", owned.batch))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["status"], "completed");
    for file in [&owned.file, &owned.output_file, &owned.error_file] {
        let content = env
            .get(&env.alpha, &format!("/v1/files/{file}/content"))
            .await;
        assert_eq!(content.status(), 200, "alpha's {file}");
        assert!(!content.bytes().await.unwrap().is_empty());
    }
    let output = env.file_lines(&json!(owned.output_file)).await;
    assert_eq!(output.len(), 1);
    assert_eq!(output[0]["custom_id"], "good");
    assert_eq!(env.mock.stats(), hits_before, "no upstream call");
    let mut alpha_lists: Vec<String> = crate::everything_listed(&env, &env.alpha).await;
    alpha_lists.sort();
    let mut expected: Vec<String> = alphas.iter().map(|id| (*id).clone()).collect();
    expected.sort();
    assert_eq!(alpha_lists, expected);
}

#[tokio::test]
async fn idempotency_keys_are_per_tenant() {
    let env = start(Setup::default()).await;
    let send_async = |api_key: &str, content: &str| {
        env.http
            .post(env.url("/v1/chat/completions"))
            .bearer_auth(api_key)
            .header("x-prism-async", "true")
            .header("idempotency-key", "shared-async-key")
            .json(&chat_body("gpt-idem", content))
            .send()
    };
    let at = rfc3339_in(HOUR_MS);
    let send_scheduled = |api_key: &str, content: &str| {
        env.http
            .post(env.url("/v1/scheduled"))
            .bearer_auth(api_key)
            .header("idempotency-key", "shared-scheduled-key")
            .json(&json!({"scheduled_at": at, "request": chat_body("gpt-idem", content)}))
            .send()
    };
    // The same key and body from two tenants: two jobs. Another body from beta is beta's first
    // use of the key, not a reuse of alpha's.
    for (path, status) in [("/v1/async", 202), ("/v1/scheduled", 201)] {
        let send = |api_key: &str, content: &str| {
            if path == "/v1/async" {
                send_async(api_key, content)
            } else {
                send_scheduled(api_key, content)
            }
        };
        let alpha = send(&env.alpha, "same").await.unwrap();
        assert_eq!(alpha.status(), status, "{path}");
        let alpha: Value = alpha.json().await.unwrap();
        let beta = send(&env.beta, "same").await.unwrap();
        assert_eq!(beta.status(), status, "{path}");
        let beta: Value = beta.json().await.unwrap();
        assert_ne!(alpha["id"], beta["id"], "{path}");
        let beta_again: Value = send(&env.beta, "same").await.unwrap().json().await.unwrap();
        assert_eq!(beta_again["id"], beta["id"], "{path}: beta's replay");
        assert_eq!(
            list_ids(&env, &env.alpha, path).await,
            vec![alpha["id"].as_str().unwrap()]
        );
        assert_eq!(
            list_ids(&env, &env.beta, path).await,
            vec![beta["id"].as_str().unwrap()]
        );
        assert_eq!(
            env.job(&env.alpha, alpha["id"].as_str().unwrap()).await["id"],
            alpha["id"]
        );
    }
    // A third tenant sends the key both used with another body: its own first use, no conflict.
    let gamma = crate::support::create_key_on(&env.backend, &env.data_dir(), "gamma").await;
    let other = send_async(&gamma, "different").await.unwrap();
    assert_eq!(other.status(), 202);
}

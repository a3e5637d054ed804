#![allow(clippy::unwrap_used)]
use std::time::{Duration, Instant};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load() {
    let up = prism_testkit::spawn_mock_upstream(([127, 0, 0, 1], 0).into()).await.unwrap();
    let url = format!("{}/chat/completions", up.base_url());
    let client = reqwest::Client::new();
    let body = serde_json::json!({"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello there world"}]});
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (c, u, b) = (client.clone(), url.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                let r = c.post(&u).json(&b).send().await.unwrap();
                r.bytes().await.unwrap();
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks { total += t.await.unwrap(); }
    println!("rps={} hits={}", total / 3, up.hits("gpt-4o-mini"));
}

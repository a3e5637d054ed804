//! Calls on recurring schedules for the suites that make them: a create body, create (asserting
//! the 201), read, pause or resume, and a schedule's runs.

use serde_json::{Value, json};

use super::{Env, chat_body};

pub fn recurring(schedule: Value, model: &str) -> Value {
    json!({"schedule": schedule, "request": chat_body(model, "recurring hello"), "metadata": {"report": "daily"}})
}

pub async fn create(env: &Env, body: &Value) -> Value {
    let response = env.post(&env.alpha, "/v1/scheduled", body).await;
    let status = response.status();
    let answer: Value = response.json().await.unwrap();
    assert_eq!(status, 201, "{answer}");
    answer
}

pub async fn schedule(env: &Env, id: &str) -> Value {
    env.job(&env.alpha, id).await
}

pub async fn action(env: &Env, id: &str, verb: &str) -> (u16, Value) {
    let response = env
        .post(
            &env.alpha,
            &format!("/v1/scheduled/{id}/{verb}"),
            &json!({}),
        )
        .await;
    (response.status().as_u16(), response.json().await.unwrap())
}

pub async fn runs(env: &Env, id: &str, query: &str) -> Vec<Value> {
    let response = env
        .get(&env.alpha, &format!("/v1/scheduled/{id}/runs{query}"))
        .await;
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["data"].as_array().unwrap().clone()
}

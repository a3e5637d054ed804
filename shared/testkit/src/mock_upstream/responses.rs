//! `POST /v1/responses` as the mock answers it: the last user input echoed as one output
//! message, whole (JSON) or as the typed events OpenAI streams (`response.created`,
//! `response.in_progress`, `response.output_item.added`, `response.content_part.added`, one
//! `response.output_text.delta` per word, the `.done` events, `response.completed`), each with
//! its `sequence_number`. Faults come from the model name, as for chat completions.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::handlers::{Answer, refuse, serve};
use super::stats::Stats;
use super::wire::{EventStream, word_pieces};

#[derive(Debug, Deserialize)]
struct ResponsesRequest {
    model: String,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
}

impl ResponsesRequest {
    /// The text echoed: a string input, or the last user item's text (string or parts).
    fn echo(&self) -> String {
        match &self.input {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(items)) => items
                .iter()
                .rev()
                .find(|item| item["role"] == "user")
                .map(|item| match &item["content"] {
                    Value::String(text) => text.clone(),
                    Value::Array(parts) => {
                        parts.iter().filter_map(|p| p["text"].as_str()).collect()
                    }
                    _ => String::new(),
                })
                .unwrap_or_default(),
            _ => String::new(),
        }
    }
}

pub(super) struct ResponsesAnswer {
    id: String,
    message_id: String,
    created_at: u64,
    model: String,
    text: String,
    input_tokens: usize,
    stream: bool,
}

impl ResponsesAnswer {
    fn new(model: &str, request: &ResponsesRequest) -> Self {
        let text = request.echo();
        Self {
            id: format!("resp_{:048x}", rand::rng().random::<u128>()),
            message_id: format!("msg_{:048x}", rand::rng().random::<u128>()),
            created_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            model: model.to_owned(),
            input_tokens: text.split_whitespace().count(),
            text,
            stream: request.stream.unwrap_or(false),
        }
    }

    fn message(&self, status: &str, text: Option<&str>) -> Value {
        let content = match text {
            Some(text) => json!([{"type": "output_text", "text": text, "annotations": []}]),
            None => json!([]),
        };
        json!({
            "type": "message",
            "id": self.message_id,
            "status": status,
            "role": "assistant",
            "content": content,
        })
    }

    fn response(&self, status: &str, output: Value, usage: Value) -> Value {
        json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": false,
            "error": null,
            "incomplete_details": null,
            "instructions": null,
            "max_output_tokens": null,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": true,
            "previous_response_id": null,
            "store": true,
            "temperature": 1.0,
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": 1.0,
            "truncation": "disabled",
            "usage": usage,
            "metadata": {},
        })
    }

    fn completed(&self) -> Value {
        let output_tokens = self.text.split_whitespace().count();
        self.response(
            "completed",
            json!([self.message("completed", Some(&self.text))]),
            json!({
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": self.input_tokens + output_tokens,
            }),
        )
    }
}

impl ResponsesAnswer {
    pub(super) fn is_stream(&self) -> bool {
        self.stream
    }

    pub(super) fn whole(&self) -> Result<Bytes, serde_json::Error> {
        serde_json::to_vec(&self.completed()).map(Bytes::from)
    }

    pub(super) fn events(&self) -> Result<EventStream, serde_json::Error> {
        let in_progress = self.response("in_progress", json!([]), Value::Null);
        let item = |status: &str, text: Option<&str>| self.message(status, text);
        let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
        let ids = json!({"item_id": self.message_id, "output_index": 0, "content_index": 0});
        let mut events: Vec<Value> = vec![
            json!({"type": "response.created", "response": in_progress}),
            json!({"type": "response.in_progress", "response": in_progress}),
            json!({"type": "response.output_item.added", "output_index": 0,
                   "item": item("in_progress", None)}),
            with(
                &ids,
                json!({"type": "response.content_part.added", "part": part("")}),
            ),
        ];
        for piece in word_pieces(&self.text) {
            events.push(with(
                &ids,
                json!({"type": "response.output_text.delta", "delta": piece, "logprobs": []}),
            ));
        }
        events.push(with(
            &ids,
            json!({"type": "response.output_text.done", "text": self.text, "logprobs": []}),
        ));
        events.push(with(
            &ids,
            json!({"type": "response.content_part.done", "part": part(&self.text)}),
        ));
        events.push(
            json!({"type": "response.output_item.done", "output_index": 0,
                           "item": item("completed", Some(&self.text))}),
        );
        events.push(json!({"type": "response.completed", "response": self.completed()}));
        let mut bytes = Vec::new();
        let mut event_ends = Vec::new();
        for (sequence, mut event) in events.into_iter().enumerate() {
            event["sequence_number"] = json!(sequence);
            let name = event["type"].as_str().unwrap_or("message").to_owned();
            bytes.extend_from_slice(format!("event: {name}\ndata: ").as_bytes());
            serde_json::to_writer(&mut bytes, &event)?;
            bytes.extend_from_slice(b"\n\n");
            event_ends.push(bytes.len());
        }
        Ok(EventStream {
            bytes: Bytes::from(bytes),
            event_ends,
        })
    }
}

fn with(base: &Value, extra: Value) -> Value {
    let mut out = base.clone();
    if let (Value::Object(out), Value::Object(extra)) = (&mut out, extra) {
        out.extend(extra);
    }
    out
}

pub(super) async fn create_response(State(stats): State<Arc<Stats>>, body: Bytes) -> Response {
    match serde_json::from_slice::<ResponsesRequest>(&body) {
        Ok(mut request) => {
            let model = std::mem::take(&mut request.model);
            let answer = ResponsesAnswer::new(&model, &request);
            serve(&stats, model, |_| Answer::Responses(&answer)).await
        }
        Err(err) => refuse(&stats, &err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ResponsesRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn events_are_numbered_in_order_and_end_with_the_completed_response() {
        let answer = ResponsesAnswer::new(
            "mock-echo",
            &request(r#"{"model":"m","input":"one two three","stream":true}"#),
        );
        let stream = answer.events().unwrap();
        let events = stream.events();
        let datas: Vec<Value> = events
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap();
                let data = text.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            })
            .collect();
        for (i, data) in datas.iter().enumerate() {
            assert_eq!(data["sequence_number"], json!(i));
        }
        let deltas: String = datas
            .iter()
            .filter(|d| d["type"] == "response.output_text.delta")
            .map(|d| d["delta"].as_str().unwrap())
            .collect();
        assert_eq!(deltas, "one two three");
        let last = datas.last().unwrap();
        assert_eq!(last["type"], "response.completed");
        assert_eq!(
            last["response"]["output"][0]["content"][0]["text"],
            "one two three"
        );
    }

    #[test]
    fn the_last_user_item_is_echoed() {
        let r = request(
            r#"{"model":"m","input":[{"role":"user","content":"a"},{"role":"assistant","content":"b"},{"role":"user","content":[{"type":"input_text","text":"c"}]}]}"#,
        );
        assert_eq!(r.echo(), "c");
    }
}

//! The mock's answers for the endpoints beside chat completions: `/v1/completions` (the prompt
//! echoed), `/v1/embeddings` (deterministic unit vectors derived from each input, of the
//! requested `dimensions`, as floats or base64) and `/v1/moderations` (an input is flagged for
//! violence when it mentions "kill").

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use super::wire::{EventStream, unix_seconds};

/// Dimensions of a mock embedding when the request names none: small, so a 10,000-line batch
/// stays small.
pub(crate) const DEFAULT_DIMENSIONS: usize = 8;

/// The fields the mock reads of a completions, embeddings or moderations request; every other
/// field is accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct EndpointRequest {
    #[serde(default)]
    pub(crate) model: Option<String>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    input: Option<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    encoding_format: Option<String>,
}

impl EndpointRequest {
    pub(crate) fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// The texts of a `prompt` or `input`: a string, or an array of strings or token lists (a token
/// list reads as its numbers joined by spaces).
fn texts(value: Option<&Value>) -> Vec<String> {
    fn text(value: &Value) -> String {
        match value {
            Value::String(s) => s.clone(),
            Value::Array(tokens) => tokens
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            other => other.to_string(),
        }
    }
    match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_number()) => {
            items.iter().map(text).collect()
        }
        Some(other) => vec![text(other)],
    }
}

fn words(texts: &[String]) -> u64 {
    texts
        .iter()
        .map(|t| t.split_whitespace().count() as u64)
        .sum()
}

/// `text_completion`: the prompt echoed; `events` is its stream form when `stream: true`.
pub(crate) fn completion(model: &str, request: &EndpointRequest) -> (Bytes, EventStream) {
    let prompts = texts(request.prompt.as_ref());
    let text = prompts.join(" ");
    let tokens = words(&prompts);
    let id = format!("cmpl-{:024x}", rand::random::<u128>() >> 32);
    let created = unix_seconds();
    let choice = |text: &str, finish: Option<&str>| json!({"text": text, "index": 0, "logprobs": null, "finish_reason": finish});
    let usage =
        json!({"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": tokens * 2});
    let whole = json!({
        "id": id, "object": "text_completion", "created": created, "model": model,
        "choices": [choice(&text, Some("stop"))], "usage": usage,
    });
    let mut events = Vec::new();
    let mut ends = Vec::new();
    for (piece, finish) in [(text.as_str(), None), ("", Some("stop"))] {
        let chunk = json!({
            "id": id, "object": "text_completion", "created": created, "model": model,
            "choices": [choice(piece, finish)],
        });
        events.extend_from_slice(format!("data: {chunk}\n\n").as_bytes());
        ends.push(events.len());
    }
    events.extend_from_slice(b"data: [DONE]\n\n");
    ends.push(events.len());
    (
        Bytes::from(whole.to_string()),
        EventStream {
            bytes: Bytes::from(events),
            event_ends: ends,
        },
    )
}

/// A unit vector of `dimensions` drawn from a generator seeded by the text: the same input
/// always embeds the same way, different inputs differently.
pub(crate) fn embed(text: &str, dimensions: usize) -> Vec<f32> {
    // FNV-1a, then xorshift64*: tiny, stable across platforms and releases.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut vector: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let draw = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40;
            (draw as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|v| *v /= norm);
    }
    vector
}

/// The embeddings `list`.
pub(crate) fn embeddings(model: &str, request: &EndpointRequest) -> Bytes {
    let inputs = texts(request.input.as_ref());
    let dimensions = request.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
    let base64 = request.encoding_format.as_deref() == Some("base64");
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, text)| {
            let vector = embed(text, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
                Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let tokens = words(&inputs);
    Bytes::from(
        json!({
            "object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        })
        .to_string(),
    )
}

const CATEGORIES: [&str; 5] = ["harassment", "hate", "self-harm", "sexual", "violence"];

/// The moderation object: one result per input.
pub(crate) fn moderation(model: &str, request: &EndpointRequest) -> Bytes {
    let results: Vec<Value> = texts(request.input.as_ref())
        .iter()
        .map(|text| {
            let violent = text.to_lowercase().contains("kill");
            let categories: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|c| (c.to_string(), json!(*c == "violence" && violent)))
                .collect();
            let scores: serde_json::Map<String, Value> = CATEGORIES
                .iter()
                .map(|c| {
                    let score = if *c == "violence" && violent {
                        0.97
                    } else {
                        0.001
                    };
                    (c.to_string(), json!(score))
                })
                .collect();
            json!({"flagged": violent, "categories": categories, "category_scores": scores})
        })
        .collect();
    let id = format!("modr-{:024x}", rand::random::<u128>() >> 32);
    Bytes::from(json!({"id": id, "model": model, "results": results}).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> EndpointRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors_of_the_asked_size() {
        let a = embed("hello", 16);
        assert_eq!(a, embed("hello", 16));
        assert_ne!(a, embed("hullo", 16));
        assert_eq!(a.len(), 16);
        let norm: f32 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-4);
    }

    #[test]
    fn base64_embeddings_decode_to_the_float_vector() {
        let body = embeddings(
            "e",
            &request(r#"{"input":["x","y"],"dimensions":4,"encoding_format":"base64"}"#),
        );
        let list: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 2);
        let encoded = list["data"][1]["embedding"].as_str().unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let floats: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(floats, embed("y", 4));
    }

    #[test]
    fn moderation_flags_violence_only_where_asked() {
        let body = moderation("m", &request(r#"{"input":["I will kill it","hello"]}"#));
        let object: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(object["results"][0]["flagged"], true);
        assert_eq!(object["results"][1]["flagged"], false);
    }
}

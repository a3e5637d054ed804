//! The OpenAI wire format as the mock speaks it: the request fields it reads, and the bytes of
//! completions, stream chunks and error bodies it writes.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The parts of a chat request the mock reads; every other field is accepted and ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    pub(crate) model: String,
    pub(crate) messages: Vec<RequestMessage>,
    #[serde(default)]
    pub(crate) stream: Option<bool>,
    #[serde(default)]
    pub(crate) stream_options: Option<StreamOptions>,
    #[serde(default)]
    pub(crate) service_tier: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct RequestMessage {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) content: Option<MessageContent>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
pub(crate) struct ContentPart {
    #[serde(default)]
    pub(crate) text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StreamOptions {
    #[serde(default)]
    pub(crate) include_usage: Option<bool>,
}

impl ChatRequest {
    /// Whether the caller asked for the flex tier.
    pub(crate) fn is_flex(&self) -> bool {
        self.service_tier.as_deref() == Some("flex")
    }
}

impl MessageContent {
    fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Text(text) => Cow::Borrowed(text),
            Self::Parts(parts) => Cow::Owned(
                parts
                    .iter()
                    .filter_map(|part| part.text.as_deref())
                    .collect(),
            ),
        }
    }
}

impl ChatRequest {
    pub(crate) fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|options| options.include_usage)
            .unwrap_or(false)
    }

    /// The reply the mock gives: the last user message, echoed.
    pub(crate) fn echo(&self) -> Cow<'_, str> {
        self.messages
            .iter()
            .rev()
            .find(|message| message.role == "user")
            .and_then(|message| message.content.as_ref())
            .map_or(Cow::Borrowed(""), MessageContent::text)
    }

    fn prompt_tokens(&self) -> u64 {
        self.messages
            .iter()
            .filter_map(|message| message.content.as_ref())
            .map(|content| word_count(&content.text()))
            .sum()
    }
}

/// Token counts only need to be deterministic, so words stand in for tokens.
fn word_count(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Splits `text` into one piece per word, each keeping the whitespace that follows it (the first
/// also keeps any leading whitespace), so the pieces concatenate back to `text` exactly.
pub(crate) fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut seen_word = false;
    let mut after_space = false;
    for (at, ch) in text.char_indices() {
        let space = ch.is_whitespace();
        if !space && after_space && seen_word {
            pieces.push(&text[start..at]);
            start = at;
        }
        seen_word |= !space;
        after_space = space;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[derive(Debug, Clone, Copy, Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
}

/// One assistant reply, shared by the plain and the streamed encodings so both agree on id,
/// creation time and usage.
pub(crate) struct Reply<'a> {
    id: String,
    created: u64,
    model: &'a str,
    content: Cow<'a, str>,
    usage: Usage,
    include_usage: bool,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(model: &'a str, request: &'a ChatRequest) -> Self {
        let content = request.echo();
        let prompt_tokens = request.prompt_tokens();
        let completion_tokens = word_count(&content);
        Self {
            id: completion_id(),
            created: unix_seconds(),
            model,
            content,
            usage: Usage {
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
            },
            include_usage: request.include_usage(),
        }
    }

    /// The `chat.completion` object.
    pub(crate) fn completion_json(&self) -> Result<Bytes, serde_json::Error> {
        let completion = Completion {
            id: &self.id,
            object: "chat.completion",
            created: self.created,
            model: self.model,
            choices: [Choice {
                index: 0,
                message: AssistantMessage {
                    role: "assistant",
                    content: &self.content,
                    refusal: None,
                },
                logprobs: None,
                finish_reason: "stop",
            }],
            usage: self.usage,
            system_fingerprint: None,
        };
        serde_json::to_vec(&completion).map(Bytes::from)
    }

    /// The whole event stream, with the offset where each event ends so callers can pace or cut
    /// it at event boundaries without re-encoding.
    pub(crate) fn event_stream(&self) -> Result<EventStream, serde_json::Error> {
        let mut out = EventWriter::default();
        // OpenAI sends `"usage": null` on every chunk once usage was asked for.
        let pending_usage = self.include_usage.then_some(None);
        out.chunk(&self.chunk(
            Delta {
                role: Some("assistant"),
                content: Some(""),
            },
            None,
            pending_usage,
        ))?;
        for word in word_pieces(&self.content) {
            out.chunk(&self.chunk(
                Delta {
                    role: None,
                    content: Some(word),
                },
                None,
                pending_usage,
            ))?;
        }
        out.chunk(&self.chunk(Delta::default(), Some("stop"), pending_usage))?;
        if self.include_usage {
            out.chunk(&Chunk {
                choices: None,
                usage: Some(Some(self.usage)),
                ..self.chunk(Delta::default(), None, None)
            })?;
        }
        out.event(b"[DONE]");
        Ok(out.finish())
    }

    fn chunk<'s>(
        &'s self,
        delta: Delta<'s>,
        finish_reason: Option<&'static str>,
        usage: Option<Option<Usage>>,
    ) -> Chunk<'s> {
        Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model,
            system_fingerprint: None,
            choices: Some(ChunkChoice {
                index: 0,
                delta,
                logprobs: None,
                finish_reason,
            }),
            usage,
        }
    }
}

/// A complete `text/event-stream` body and where each of its events ends.
#[derive(Clone)]
pub(crate) struct EventStream {
    pub(crate) bytes: Bytes,
    pub(crate) event_ends: Vec<usize>,
}

impl EventStream {
    /// The body split into one piece per event, sharing the one buffer.
    pub(crate) fn events(&self) -> Vec<Bytes> {
        let mut start = 0;
        self.event_ends
            .iter()
            .map(|&end| {
                let event = self.bytes.slice(start..end);
                start = end;
                event
            })
            .collect()
    }

    /// The first event whole, then half of the next one: a stream cut mid-event.
    pub(crate) fn cut_in_second_event(&self) -> Bytes {
        let first = self.event_ends.first().copied().unwrap_or(0);
        let second = self.event_ends.get(1).copied().unwrap_or(first);
        self.bytes.slice(..first + (second - first) / 2)
    }
}

#[derive(Default)]
struct EventWriter {
    buf: Vec<u8>,
    event_ends: Vec<usize>,
}

impl EventWriter {
    fn chunk(&mut self, chunk: &Chunk<'_>) -> Result<(), serde_json::Error> {
        self.buf.extend_from_slice(b"data: ");
        serde_json::to_writer(&mut self.buf, chunk)?;
        self.end_event();
        Ok(())
    }

    fn event(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(b"data: ");
        self.buf.extend_from_slice(data);
        self.end_event();
    }

    fn end_event(&mut self) {
        self.buf.extend_from_slice(b"\n\n");
        self.event_ends.push(self.buf.len());
    }

    fn finish(self) -> EventStream {
        EventStream {
            bytes: Bytes::from(self.buf),
            event_ends: self.event_ends,
        }
    }
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    system_fingerprint: Option<&'a str>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    message: AssistantMessage<'a>,
    logprobs: Option<()>,
    finish_reason: &'static str,
}

#[derive(Serialize)]
struct AssistantMessage<'a> {
    role: &'static str,
    content: &'a str,
    refusal: Option<&'a str>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'a str>,
    /// A list on the wire; the mock always answers with one choice, except in the closing usage
    /// chunk, which has none.
    #[serde(serialize_with = "serialize_choices")]
    choices: Option<ChunkChoice<'a>>,
    /// Absent unless usage was asked for; then `null` until the closing usage chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

fn serialize_choices<S: serde::Serializer>(
    choices: &Option<ChunkChoice<'_>>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(choices.iter())
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Default, Serialize)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
}

/// An OpenAI error body: `{"error": {message, type, param, code}}`.
#[derive(Debug, Serialize)]
pub(crate) struct ApiError<'a> {
    error: ApiErrorDetail<'a>,
}

#[derive(Debug, Serialize)]
struct ApiErrorDetail<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl<'a> ApiError<'a> {
    pub(crate) fn new(
        message: &'a str,
        kind: &'a str,
        param: Option<&'a str>,
        code: Option<&'a str>,
    ) -> Self {
        Self {
            error: ApiErrorDetail {
                message,
                kind,
                param,
                code,
            },
        }
    }

    pub(crate) fn to_json(&self) -> Result<Bytes, serde_json::Error> {
        serde_json::to_vec(self).map(Bytes::from)
    }
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `chatcmpl-` and 29 base62 characters, the shape OpenAI's ids have.
fn completion_id() -> String {
    let mut rng = rand::rng();
    let mut id = String::with_capacity(9 + 29);
    id.push_str("chatcmpl-");
    id.extend((0..29).map(|_| char::from(BASE62[rng.random_range(0..BASE62.len())])));
    id
}

/// `req_` and 32 hex digits, the shape of OpenAI's `x-request-id`.
pub(crate) fn request_id() -> String {
    format!("req_{:032x}", rand::rng().random::<u128>())
}

pub(crate) fn unix_seconds() -> u64 {
    // A clock before 1970 is a broken test machine, not something to fail a reply over.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ChatRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn word_pieces_concatenate_back_to_the_text() {
        for text in [
            "",
            "one",
            "hello world",
            "  lead and  trail  ",
            "a\nb\tc",
            "   ",
        ] {
            assert_eq!(word_pieces(text).concat(), text, "{text:?}");
        }
        assert_eq!(word_pieces("hello big world"), ["hello ", "big ", "world"]);
        assert_eq!(word_pieces(" hi there "), [" hi ", "there "]);
    }

    #[test]
    fn echo_takes_the_last_user_message_and_joins_parts() {
        let chat = request(
            r#"{"model":"m","messages":[
                {"role":"user","content":"first"},
                {"role":"user","content":[{"type":"text","text":"a "},{"type":"image_url"},{"type":"text","text":"b"}]},
                {"role":"assistant","content":"ignored"}]}"#,
        );
        assert_eq!(chat.echo(), "a b");
        assert_eq!(chat.prompt_tokens(), 4);
    }

    #[test]
    fn event_stream_ends_with_usage_then_done() {
        let chat = request(
            r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},
                "messages":[{"role":"user","content":"x y"}]}"#,
        );
        let stream = Reply::new("m", &chat).event_stream().unwrap();
        let events = stream.events();
        // role, two words, stop, usage, done
        assert_eq!(events.len(), 6);
        assert_eq!(&events[5][..], b"data: [DONE]\n\n");
        let usage: serde_json::Value = serde_json::from_slice(&events[4][6..]).unwrap();
        assert_eq!(usage["choices"], serde_json::json!([]));
        assert_eq!(usage["usage"]["completion_tokens"], 2);
        let cut = stream.cut_in_second_event();
        assert!(cut.len() > stream.event_ends[0] && cut.len() < stream.event_ends[1]);
    }

    #[test]
    fn ids_have_openai_shapes() {
        let id = completion_id();
        assert_eq!(id.len(), 38);
        assert!(id[9..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let request_id = request_id();
        assert_eq!(request_id.len(), 36);
        assert!(request_id[4..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}

//! The recorded stream of a `background: true, stream: true` response: the provider's SSE
//! events split as they arrive, stamped with Prism's id, and the caps on what one response may
//! record. A resumed stream (`?stream=true&starting_after=N`) replays these in order.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use crate::jobs::JobError;

/// At most this many events per response: a stream past it fails with `stream_too_large`.
pub const MAX_RECORDED_EVENTS: u64 = 20_000;
/// At most this many bytes of events per response (16 MiB).
pub const MAX_RECORDED_BYTES: u64 = 16 * 1024 * 1024;

/// One SSE event as recorded: its `sequence_number` and the whole event text (`event:` and
/// `data:` lines, without the blank line that ends it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    pub sequence_number: u64,
    pub text: String,
}

impl RecordedEvent {
    /// The event as sent to a client, blank line included.
    pub fn to_sse(&self) -> Bytes {
        Bytes::from(format!("{}\n\n", self.text))
    }

    /// The event's `type`, read back from its data.
    pub fn data(&self) -> Option<Value> {
        self.text
            .lines()
            .find_map(|l| l.strip_prefix("data:"))
            .and_then(|d| serde_json::from_str(d.trim_start()).ok())
    }
}

/// Splits an SSE byte stream into events as chunks arrive, whatever the chunk boundaries.
#[derive(Debug, Default)]
pub struct SseSplitter {
    pending: BytesMut,
}

impl SseSplitter {
    /// Appends a chunk; returns every event it completed (their text, CRLF normalised).
    pub fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        loop {
            let text = String::from_utf8_lossy(&self.pending).replace("\r\n", "\n");
            let Some(end) = text.find("\n\n") else {
                // Keep the normalised text so a CRLF split across chunks is still found.
                self.pending = BytesMut::from(text.as_bytes());
                break;
            };
            let event = text[..end].to_owned();
            self.pending = BytesMut::from(&text.as_bytes()[end + 2..]);
            if !event.trim().is_empty() {
                events.push(event);
            }
        }
        events
    }
}

/// What became of one event's arrival.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrival {
    /// Record it, under this sequence number.
    Record(RecordedEvent),
    /// A comment, a `[DONE]` or an event without data: nothing a client resumes on.
    Skip,
}

/// Reads an event's data, puts Prism's id where the provider's response id was (a resumed or
/// polled response has one id), and takes its `sequence_number` (or the next one when the
/// provider sent none).
pub fn arrival(event: &str, prism_id: &str, next_sequence: u64) -> Arrival {
    let mut name = None;
    let mut data = String::new();
    for line in event.lines() {
        if let Some(v) = line.strip_prefix("event:") {
            name = Some(v.trim().to_owned());
        } else if let Some(v) = line.strip_prefix("data:") {
            data.push_str(v.strip_prefix(' ').unwrap_or(v));
        }
    }
    let Ok(Value::Object(mut object)) = serde_json::from_str::<Value>(&data) else {
        return Arrival::Skip;
    };
    if let Some(Value::Object(response)) = object.get_mut("response") {
        response.insert("id".to_owned(), Value::String(prism_id.to_owned()));
        response.insert("background".to_owned(), Value::Bool(true));
    }
    let sequence_number = object
        .get("sequence_number")
        .and_then(Value::as_u64)
        .unwrap_or(next_sequence);
    object.insert("sequence_number".to_owned(), sequence_number.into());
    let name = name.or_else(|| {
        object
            .get("type")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let data = Value::Object(object).to_string();
    let text = match name {
        Some(name) => format!("event: {name}\ndata: {data}"),
        None => format!("data: {data}"),
    };
    Arrival::Record(RecordedEvent {
        sequence_number,
        text,
    })
}

/// Whether one more event fits the caps, given what is recorded so far.
pub fn admit(
    recorded_events: u64,
    recorded_bytes: u64,
    next: &RecordedEvent,
) -> Result<(), JobError> {
    if recorded_events + 1 > MAX_RECORDED_EVENTS
        || recorded_bytes + next.text.len() as u64 > MAX_RECORDED_BYTES
    {
        return Err(JobError::new(
            format!(
                "The response stream exceeded what Prism records for one background response \
                 ({MAX_RECORDED_EVENTS} events or {MAX_RECORDED_BYTES} bytes)."
            ),
            "server_error",
            Some("stream_too_large"),
        ));
    }
    Ok(())
}

/// The stated reason a recorded stream that a crash interrupted ends `failed`: a second call to
/// the provider would produce different events under the same sequence numbers.
pub fn interrupted_stream_error(last_recorded: u64) -> JobError {
    JobError::new(
        format!(
            "The response stream was interrupted by a Prism restart after event {last_recorded}; \
             a new upstream call would not continue it, so the response failed."
        ),
        "server_error",
        Some("stream_interrupted"),
    )
}

/// The terminal event's response object, which becomes the job's result.
pub fn final_response(event: &RecordedEvent) -> Option<(String, Value)> {
    let data = event.data()?;
    let kind = data.get("type")?.as_str()?.to_owned();
    let response = data.get("response")?.clone();
    matches!(
        kind.as_str(),
        "response.completed" | "response.failed" | "response.incomplete"
    )
    .then_some((kind, response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_crlf_come_out_whole() {
        let mut splitter = SseSplitter::default();
        assert!(splitter.push(b"event: a\r\ndata: {\"x\"").is_empty());
        assert_eq!(
            splitter.push(b":1}\r\n\r\nevent: b\n"),
            vec!["event: a\ndata: {\"x\":1}"]
        );
        assert_eq!(splitter.push(b"data: {}\n\n"), vec!["event: b\ndata: {}"]);
    }

    #[test]
    fn arrival_rebrands_the_response_and_keeps_the_sequence_number() {
        let event = "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":4,\"response\":{\"id\":\"resp_up\"}}";
        let Arrival::Record(recorded) = arrival(event, "resp_prism", 0) else {
            panic!("not recorded");
        };
        assert_eq!(recorded.sequence_number, 4);
        let data = recorded.data().unwrap();
        assert_eq!(data["response"]["id"], "resp_prism");
        assert!(recorded.text.starts_with("event: response.created\n"));
        assert_eq!(arrival("data: [DONE]", "resp_prism", 0), Arrival::Skip);
    }

    #[test]
    fn admit_refuses_past_either_cap() {
        let event = RecordedEvent {
            sequence_number: 0,
            text: "x".repeat(10),
        };
        assert!(admit(0, 0, &event).is_ok());
        let err = admit(MAX_RECORDED_EVENTS, 0, &event).unwrap_err();
        assert_eq!(err.code.as_deref(), Some("stream_too_large"));
        assert!(admit(0, MAX_RECORDED_BYTES - 5, &event).is_err());
    }

    #[test]
    fn only_terminal_events_carry_the_final_response() {
        let done = RecordedEvent {
            sequence_number: 9,
            text: "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\"}}"
                .into(),
        };
        assert_eq!(final_response(&done).unwrap().0, "response.completed");
        let delta = RecordedEvent {
            sequence_number: 3,
            text: "data: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}".into(),
        };
        assert!(final_response(&delta).is_none());
    }
}

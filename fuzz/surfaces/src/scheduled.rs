//! A `POST /v1/scheduled` body as the route reads it (strict JSON, then
//! `scheduled::parse_schedule_request` with the default horizon), and metadata as both the
//! scheduled and the batch create routes read it (`scheduled::parse_metadata`).

use prism_core::Timestamp;
use prism_core::clock::{format_rfc3339, parse_rfc3339};
use prism_core::jobs::scheduled::{MAX_PAST, parse_schedule_request};
use prism_core::jobs::service::JobPolicy;
use prism_core::json_strict::reject_duplicate_keys;
use prism_core::metadata::{MAX_METADATA_PAIRS, parse_metadata};
use serde_json::value::RawValue;

/// 2026-04-05T09:00:00Z.
const NOW: Timestamp = Timestamp(1_775_379_600_000);

pub fn scheduled_request(data: &[u8]) {
    let horizon = JobPolicy::default().schedule_horizon;
    if reject_duplicate_keys(data).is_ok()
        && let Ok(request) = parse_schedule_request(data, NOW, horizon)
    {
        assert!(request.scheduled_at >= NOW.minus(MAX_PAST));
        assert!(request.scheduled_at <= NOW.plus(horizon));
        assert_round_trip(request.scheduled_at);
        assert!(!request.model.is_empty());
        assert!(
            contains(data, &request.request),
            "the request is not the one sent"
        );
        if let Some(metadata) = &request.metadata {
            assert!(metadata.len() <= MAX_METADATA_PAIRS);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(at) = parse_rfc3339(text) {
            assert_round_trip(at);
        }
        if let Ok(raw) = serde_json::from_str::<&RawValue>(text)
            && let Ok(Some(metadata)) = parse_metadata(raw)
        {
            assert!(metadata.len() <= MAX_METADATA_PAIRS);
            for (key, value) in &metadata {
                assert!(key.chars().count() <= 64 && value.chars().count() <= 512);
            }
        }
    }
    // Far past and far future times format and read back too.
    if let Some(bytes) = data.get(..8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(bytes);
        let ms = i64::from_le_bytes(word) % 253_402_300_800_000;
        assert_round_trip(Timestamp(ms.abs()));
    }
}

/// Every time Prism writes it can read back, to the millisecond.
fn assert_round_trip(at: Timestamp) {
    let text = format_rfc3339(at);
    assert_eq!(parse_rfc3339(&text), Some(at), "{text} does not read back");
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

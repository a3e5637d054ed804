//! The recurring schedule's parsers and fire-time arithmetic: a cron expression and a time zone
//! as `recurring::cron` reads them (the first two lines of an input, the next 8 bytes an
//! instant), and a whole recurring `POST /v1/scheduled` body as the route reads it (strict JSON,
//! then `recurring::request::parse_recurring_request` with the product's 60 s minimum interval).

use std::time::Duration;

use prism_core::Timestamp;
use prism_core::json_strict::reject_duplicate_keys;
use prism_core::recurring::cron::{
    eventbridge_expression, latest_fire_until, next_fire, parse_cron, parse_zone,
};
use prism_core::recurring::decisions::first_fire;
use prism_core::recurring::request::parse_recurring_request;

/// 2026-04-05T09:00:00Z.
const NOW: Timestamp = Timestamp(1_775_379_600_000);

/// About ten years: how far past `NOW` the fuzzed instant may lie.
const SPAN_MS: u64 = 10 * 366 * 24 * 3600 * 1000;

/// `jobs.recurring_min_interval`'s default, what AWS requires.
const MIN_INTERVAL: Duration = Duration::from_secs(60);

pub fn recurring_schedule(data: &[u8]) {
    expression_and_zone(data);
    request_body(data);
}

fn expression_and_zone(data: &[u8]) {
    let mut lines = data.splitn(3, |b| *b == b'\n');
    let (Some(cron), zone, rest) = (lines.next(), lines.next(), lines.next()) else {
        return;
    };
    let Ok(cron) = std::str::from_utf8(cron) else {
        return;
    };
    let expr = match parse_cron(cron) {
        Ok(expr) => expr,
        Err(error) => {
            assert!(!error.message.is_empty(), "an error says what is wrong");
            assert!(
                error.position <= cron.len(),
                "position {} is outside '{cron}'",
                error.position
            );
            return;
        }
    };
    assert!(
        parse_cron(expr.as_str()).is_ok(),
        "'{}' does not parse again",
        expr.as_str()
    );
    if let Some(eventbridge) = eventbridge_expression(&expr) {
        assert!(!expr.has_seconds());
        let inner = eventbridge
            .strip_prefix("cron(")
            .and_then(|e| e.strip_suffix(')'))
            .unwrap_or_else(|| panic!("not cron(...): {eventbridge}"));
        assert_eq!(inner.split_whitespace().count(), 6, "{eventbridge}");
    }
    let Some(zone) = zone
        .and_then(|z| std::str::from_utf8(z).ok())
        .and_then(|z| parse_zone(z.trim()))
    else {
        return;
    };
    let offset = rest.and_then(|r| r.get(..8)).map_or(0, |b| {
        u64::from_le_bytes(b.try_into().unwrap_or([0; 8])) % SPAN_MS
    });
    let after = Timestamp(NOW.0 + i64::try_from(offset).unwrap_or(0));
    let Some(next) = next_fire(&expr, zone, after) else {
        return;
    };
    assert!(next > after, "next fire {next:?} is not after {after:?}");
    // Nothing fires between `after` and the next fire time.
    assert_eq!(
        latest_fire_until(&expr, zone, after, next.minus(Duration::from_millis(1))),
        None,
        "a fire time before the next one after {after:?}"
    );
    if let Some(latest) = latest_fire_until(&expr, zone, after, next) {
        assert!(latest > after && latest <= next);
    }
}

fn request_body(data: &[u8]) {
    if reject_duplicate_keys(data).is_err() {
        return;
    }
    let Ok(request) = parse_recurring_request(data, NOW, MIN_INTERVAL) else {
        return;
    };
    let recurrence = &request.recurrence;
    assert!(
        !recurrence.cron.has_seconds(),
        "a seconds field passed the 60 s minimum"
    );
    assert!(
        eventbridge_expression(&recurrence.cron).is_some(),
        "'{}' was accepted but EventBridge cannot run it",
        recurrence.cron.as_str()
    );
    assert!(!request.model.is_empty());
    let first =
        first_fire(recurrence, NOW, None).expect("an accepted schedule fires at least once");
    assert!(first > NOW);
    if let Some(start) = recurrence.start_at {
        assert!(first >= start);
    }
    if let Some(end) = recurrence.end_at {
        assert!(first <= end);
    }
}

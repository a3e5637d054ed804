//! Every webhook rule as a pure function: which endpoint gets an event, which secrets sign it,
//! what a delivery attempt's answer means, when the next attempt is due (exponential backoff
//! with jitter for up to 72 h, never sooner than a 429's or 503's `Retry-After`), and when an
//! endpoint is disabled (failing for 72 h, or at once on 410 Gone).

use std::time::Duration;

use super::{DeliveryOutcome, DeliveryState, Endpoint, EndpointStatus, WebhookEvent};
use crate::clock::Timestamp;

/// Attempts of one event continue this long after the first one.
pub const RETRY_WINDOW: Duration = Duration::from_secs(72 * 3600);
/// An endpoint whose deliveries have all failed this long is disabled.
pub const DISABLE_AFTER: Duration = Duration::from_secs(72 * 3600);
/// The first retry waits about this long; each later one doubles it, up to [`MAX_RETRY_WAIT`].
pub const DEFAULT_RETRY_BASE: Duration = Duration::from_secs(5);
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// One attempt's whole time: connect, send, and the receiver's answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// A rotated-out secret keeps signing this long alongside the new one.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The longest `Retry-After` honoured: a receiver asking for more is retried after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// Only a 2xx is a delivery; 3xx (never followed), 4xx and 5xx are retried.
pub fn is_delivered(status: Option<u16>) -> bool {
    status.is_some_and(|s| (200..300).contains(&s))
}

/// Whether `endpoint` is sent `event`: enabled, and the event is its own (a test or a
/// redelivery to it) or of a kind it subscribes to (no list: every kind).
pub fn receives(endpoint: &Endpoint, event: &WebhookEvent) -> bool {
    if endpoint.status != EndpointStatus::Enabled || endpoint.tenant != event.tenant {
        return false;
    }
    match &event.endpoint {
        Some(only) => *only == endpoint.id,
        None => endpoint.events.is_empty() || endpoint.events.contains(&event.kind),
    }
}

/// Whether a terminal transition records its event in the outbox: only when some endpoint of
/// the tenant receives it now. An event no endpoint takes would be delivered to nobody, yet
/// cost a queue message, a delivery run and its settling writes per finished job; an endpoint
/// is sent the events of transitions after its creation.
pub fn worth_recording(endpoints: &[Endpoint], event: &WebhookEvent) -> bool {
    endpoints.iter().any(|endpoint| receives(endpoint, event))
}

/// The secrets that sign at `now`: the current one and any rotated out less than 24 h ago.
pub fn signing_secrets(endpoint: &Endpoint, now: Timestamp) -> Vec<&str> {
    endpoint
        .secrets
        .iter()
        .filter(|s| s.expires_at.is_none_or(|at| at > now))
        .map(|s| s.value.as_str())
        .collect()
}

/// The wait before retry number `attempt` (1 after the first failure): `base · 2^(attempt-1)`
/// capped at an hour, of which a random half (`jitter` in [0, 1)) is taken off, so receivers
/// that failed together are not retried together.
pub fn retry_wait(base: Duration, attempt: u32, jitter: f64) -> Duration {
    let doubled = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let full = doubled.min(MAX_RETRY_WAIT);
    let jitter = jitter.clamp(0.0, 1.0);
    full.mul_f64(1.0 - jitter / 2.0)
}

/// A 410 Gone: the receiver says the endpoint is no more. Its delivery stops and the endpoint
/// is disabled at once.
pub fn is_gone(status: Option<u16>) -> bool {
    status == Some(410)
}

/// The statuses whose `Retry-After` is honoured: 429 Too Many Requests and 503 Service
/// Unavailable (elsewhere the header is not about retrying the request).
fn asks_to_wait(status: Option<u16>) -> bool {
    matches!(status, Some(429 | 503))
}

/// A `Retry-After` header's wait at `now`: delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct
/// 2026 07:28:00 GMT`; a date already past is no wait). `None` for anything else.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a long time".
        return Some(value.parse().map_or(Duration::MAX, Duration::from_secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(now.until(Timestamp(at.timestamp_millis())))
}

/// The state after one attempt answered `status` (`None`: no answer) at `now`: delivered on a
/// 2xx; given up on a 410; otherwise the next attempt after [`retry_wait`] (after a 429's or
/// 503's `retry_after`, up to [`MAX_RETRY_AFTER`], when that is longer), unless that falls past
/// the 72 h window, when the delivery gives up.
pub fn after_attempt(
    state: &DeliveryState,
    status: Option<u16>,
    retry_after: Option<Duration>,
    now: Timestamp,
    base: Duration,
    jitter: f64,
) -> DeliveryState {
    let attempts = state.attempts.saturating_add(1);
    let first = state.first_attempt_at.unwrap_or(now);
    let mut next = DeliveryState {
        attempts,
        first_attempt_at: Some(first),
        ..state.clone()
    };
    if is_delivered(status) {
        next.outcome = DeliveryOutcome::Delivered;
        next.next_at = None;
        return next;
    }
    let asked = retry_after
        .filter(|_| asks_to_wait(status))
        .map_or(Duration::ZERO, |wait| wait.min(MAX_RETRY_AFTER));
    let due = now.plus(retry_wait(base, attempts, jitter).max(asked));
    if is_gone(status) || due > first.plus(RETRY_WINDOW) {
        next.outcome = DeliveryOutcome::GaveUp;
        next.next_at = None;
    } else {
        next.outcome = DeliveryOutcome::Pending;
        next.next_at = Some(due);
    }
    next
}

/// What one attempt that answered `status` changes on its endpoint: a success clears the
/// failing streak; a failure starts one, and disables the endpoint once the streak is 72 h long;
/// a 410 Gone disables it at once. `None`: no change.
pub fn endpoint_after_attempt(
    endpoint: &Endpoint,
    status: Option<u16>,
    now: Timestamp,
) -> Option<Endpoint> {
    let mut next = endpoint.clone();
    if is_delivered(status) {
        next.failing_since = None;
    } else {
        let since = *next.failing_since.get_or_insert(now);
        if (is_gone(status) || since.until(now) >= DISABLE_AFTER)
            && next.status == EndpointStatus::Enabled
        {
            next.status = EndpointStatus::Disabled;
            next.disabled_at = Some(now);
        }
    }
    (next != *endpoint).then_some(next)
}

/// When the event's pending deliveries next need a run: the earliest due attempt.
pub fn next_due(states: &[DeliveryState]) -> Option<Timestamp> {
    states
        .iter()
        .filter(|s| s.outcome == DeliveryOutcome::Pending)
        .filter_map(|s| s.next_at)
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TenantId;
    use crate::webhooks::{EventKind, Secret};

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn endpoint(events: Vec<EventKind>) -> Endpoint {
        Endpoint {
            id: "we_1".into(),
            tenant: tenant("acme"),
            url: "https://example.com/hook".into(),
            events,
            description: None,
            status: EndpointStatus::Enabled,
            created_at: Timestamp(0),
            secrets: vec![Secret {
                value: "whsec_new".into(),
                expires_at: None,
            }],
            failing_since: None,
            disabled_at: None,
        }
    }

    fn event(kind: EventKind) -> WebhookEvent {
        WebhookEvent::for_subject(&tenant("acme"), kind, "batch_x", Timestamp(1_000))
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn only_2xx_is_delivered_and_redirects_are_retried() {
        assert!(is_delivered(Some(200)));
        assert!(is_delivered(Some(204)));
        for status in [Some(301), Some(302), Some(400), Some(410), Some(500), None] {
            assert!(!is_delivered(status), "{status:?}");
        }
    }

    #[test]
    fn endpoint_receives_subscribed_kinds_of_its_own_tenant_while_enabled() {
        let all = endpoint(vec![]);
        assert!(receives(&all, &event(EventKind::AsyncJobFailed)));
        let batches = endpoint(vec![EventKind::BatchCompleted]);
        assert!(receives(&batches, &event(EventKind::BatchCompleted)));
        assert!(!receives(&batches, &event(EventKind::BatchFailed)));
        let mut other = event(EventKind::BatchCompleted);
        other.tenant = tenant("other");
        assert!(!receives(&all, &other));
        let mut disabled = endpoint(vec![]);
        disabled.status = EndpointStatus::Disabled;
        assert!(!receives(&disabled, &event(EventKind::BatchCompleted)));
    }

    #[test]
    fn an_event_is_recorded_only_when_an_endpoint_of_its_tenant_takes_it() {
        let completed = event(EventKind::AsyncJobCompleted);
        assert!(!worth_recording(&[], &completed), "no endpoint");
        let batches = endpoint(vec![EventKind::BatchCompleted]);
        assert!(!worth_recording(std::slice::from_ref(&batches), &completed));
        let mut disabled = endpoint(vec![]);
        disabled.status = EndpointStatus::Disabled;
        assert!(!worth_recording(&[batches.clone(), disabled], &completed));
        assert!(worth_recording(&[batches, endpoint(vec![])], &completed));
    }

    #[test]
    fn a_targeted_event_goes_to_its_endpoint_only() {
        let mut test = event(EventKind::EndpointTest);
        test.endpoint = Some("we_1".into());
        assert!(receives(&endpoint(vec![EventKind::BatchCompleted]), &test));
        test.endpoint = Some("we_2".into());
        assert!(!receives(&endpoint(vec![]), &test));
    }

    #[test]
    fn a_rotated_secret_signs_until_its_overlap_ends() {
        let mut e = endpoint(vec![]);
        e.secrets.push(Secret {
            value: "whsec_old".into(),
            expires_at: Some(Timestamp(0).plus(ROTATION_OVERLAP)),
        });
        assert_eq!(
            signing_secrets(&e, Timestamp(1)),
            ["whsec_new", "whsec_old"]
        );
        assert_eq!(
            signing_secrets(&e, Timestamp(0).plus(ROTATION_OVERLAP)),
            ["whsec_new"]
        );
    }

    #[test]
    fn retry_waits_double_up_to_an_hour_and_jitter_takes_at_most_half() {
        let base = DEFAULT_RETRY_BASE;
        assert_eq!(retry_wait(base, 1, 0.0), Duration::from_secs(5));
        assert_eq!(retry_wait(base, 2, 0.0), Duration::from_secs(10));
        assert_eq!(retry_wait(base, 4, 0.0), Duration::from_secs(40));
        assert_eq!(retry_wait(base, 30, 0.0), MAX_RETRY_WAIT);
        assert_eq!(retry_wait(base, 3, 0.999_999).as_secs(), 10);
        assert!(retry_wait(base, 3, 0.5) < retry_wait(base, 3, 0.0));
    }

    #[test]
    fn a_failed_attempt_schedules_the_next_and_a_2xx_settles() {
        let start = DeliveryState::new("evt_1", "we_1", Timestamp(0));
        let failed = after_attempt(
            &start,
            Some(500),
            None,
            Timestamp(0),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(failed.attempts, 1);
        assert_eq!(failed.outcome, DeliveryOutcome::Pending);
        assert_eq!(failed.next_at, Some(Timestamp(5_000)));
        let timed_out = after_attempt(
            &failed,
            None,
            None,
            Timestamp(5_000),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(timed_out.next_at, Some(Timestamp(15_000)));
        let ok = after_attempt(
            &timed_out,
            Some(200),
            None,
            Timestamp(15_000),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(ok.outcome, DeliveryOutcome::Delivered);
        assert_eq!(ok.attempts, 3);
        assert_eq!(ok.next_at, None);
        assert_eq!(ok.first_attempt_at, Some(Timestamp(0)));
    }

    #[test]
    fn retries_give_up_past_72_hours_from_the_first_attempt() {
        let mut state = DeliveryState::new("evt_1", "we_1", Timestamp(0));
        let mut now = Timestamp(0);
        let mut attempts = 0;
        while state.outcome == DeliveryOutcome::Pending {
            state = after_attempt(&state, Some(503), None, now, DEFAULT_RETRY_BASE, 0.0);
            attempts += 1;
            if let Some(next) = state.next_at {
                now = next;
            }
        }
        assert_eq!(state.outcome, DeliveryOutcome::GaveUp);
        assert!(now <= Timestamp(0).plus(RETRY_WINDOW));
        assert!(now > Timestamp(0).plus(RETRY_WINDOW - HOUR - HOUR));
        assert!((70..90).contains(&attempts), "{attempts}");
    }

    #[test]
    fn an_endpoint_failing_for_72_hours_is_disabled_and_a_success_clears_the_streak() {
        let e = endpoint(vec![]);
        let failing = endpoint_after_attempt(&e, Some(500), Timestamp(10)).unwrap();
        assert_eq!(failing.failing_since, Some(Timestamp(10)));
        assert_eq!(failing.status, EndpointStatus::Enabled);
        assert_eq!(
            endpoint_after_attempt(&failing, None, Timestamp(10).plus(HOUR)),
            None
        );
        let at = Timestamp(10).plus(DISABLE_AFTER);
        let disabled = endpoint_after_attempt(&failing, Some(503), at).unwrap();
        assert_eq!(disabled.status, EndpointStatus::Disabled);
        assert_eq!(disabled.disabled_at, Some(at));
        let healed = endpoint_after_attempt(&failing, Some(200), Timestamp(20)).unwrap();
        assert_eq!(healed.failing_since, None);
        assert_eq!(endpoint_after_attempt(&e, Some(204), Timestamp(20)), None);
    }

    #[test]
    fn retry_after_on_429_and_503_delays_the_next_attempt_and_elsewhere_is_ignored() {
        let start = DeliveryState::new("evt_1", "we_1", Timestamp(0));
        let wait = Some(Duration::from_secs(120));
        for status in [Some(429), Some(503)] {
            let next = after_attempt(&start, status, wait, Timestamp(0), DEFAULT_RETRY_BASE, 0.0);
            assert_eq!(next.next_at, Some(Timestamp(120_000)), "{status:?}");
            assert_eq!(next.outcome, DeliveryOutcome::Pending);
        }
        // Shorter than the backoff: the backoff.
        let short = after_attempt(
            &start,
            Some(429),
            Some(Duration::from_secs(1)),
            Timestamp(0),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(short.next_at, Some(Timestamp(5_000)));
        // On a 500 the header is not about retrying.
        let other = after_attempt(
            &start,
            Some(500),
            wait,
            Timestamp(0),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(other.next_at, Some(Timestamp(5_000)));
        // A week is read as a day.
        let long = after_attempt(
            &start,
            Some(503),
            Some(Duration::from_secs(7 * 24 * 3600)),
            Timestamp(0),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(long.next_at, Some(Timestamp(0).plus(MAX_RETRY_AFTER)));
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = Timestamp(1_793_000_000_000);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        let in_a_minute = chrono::DateTime::from_timestamp_millis(now.0 + 60_000)
            .unwrap()
            .to_rfc2822()
            .replace("+0000", "GMT");
        assert_eq!(
            parse_retry_after(&in_a_minute, now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-1", "1.5", "soon", "2026-10-21T07:28:00Z"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn a_410_gives_up_the_delivery_and_disables_the_endpoint_at_once() {
        let start = DeliveryState::new("evt_1", "we_1", Timestamp(0));
        let gone = after_attempt(
            &start,
            Some(410),
            None,
            Timestamp(7),
            DEFAULT_RETRY_BASE,
            0.0,
        );
        assert_eq!(gone.outcome, DeliveryOutcome::GaveUp);
        assert_eq!(gone.next_at, None);
        let disabled = endpoint_after_attempt(&endpoint(vec![]), Some(410), Timestamp(7)).unwrap();
        assert_eq!(disabled.status, EndpointStatus::Disabled);
        assert_eq!(disabled.disabled_at, Some(Timestamp(7)));
        // Other 4xx are retried and do not disable.
        let refused = endpoint_after_attempt(&endpoint(vec![]), Some(404), Timestamp(7)).unwrap();
        assert_eq!(refused.status, EndpointStatus::Enabled);
    }

    #[test]
    fn next_due_is_the_earliest_pending_attempt() {
        let mut a = DeliveryState::new("evt_1", "we_1", Timestamp(50));
        let b = DeliveryState::new("evt_1", "we_2", Timestamp(20));
        assert_eq!(next_due(&[a.clone(), b.clone()]), Some(Timestamp(20)));
        a.outcome = DeliveryOutcome::Delivered;
        a.next_at = None;
        assert_eq!(next_due(&[a]), None);
    }

    #[test]
    fn the_payload_carries_ids_only_in_openais_shape() {
        let body: serde_json::Value =
            serde_json::from_str(&event(EventKind::BatchCompleted).payload()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"id": "evt_batch_x", "object": "event",
                "type": "batch.completed", "created_at": 1, "data": {"id": "batch_x"}})
        );
    }
}

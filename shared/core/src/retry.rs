//! Backoff: between upstream attempts (exponential with full jitter, unless the upstream said how
//! long to wait), and between storage writes refused for contention; and whether a failed
//! upstream attempt is tried again at all.

use std::time::Duration;

use rand::Rng;

use crate::ports::UpstreamError;

pub const BASE_DELAY: Duration = Duration::from_millis(500);
pub const MAX_DELAY: Duration = Duration::from_secs(30);

/// Full jitter: uniform in `[0, min(cap, base * 2^attempt)]` (Brooker, "Exponential Backoff And
/// Jitter"). `attempt` counts failures so far, from 1.
pub fn full_jitter(attempt: u32) -> Duration {
    let ceiling = ceiling(attempt);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::rng().random_range(0..=ms))
}

fn ceiling(attempt: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u32::MAX);
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

/// A short randomized wait before a storage write refused for contention (a colliding
/// transaction, throttling) is tried again: `base` of 10 ms doubling per attempt up to 640 ms,
/// plus up to as much again at random so colliding writers spread apart.
pub fn contention_backoff(attempt: u32) -> Duration {
    let base = 10u64 << attempt.min(6);
    Duration::from_millis(base + rand::rng().random_range(0..base))
}

/// The wait before the next attempt: the upstream's hint when it gave one, else jittered backoff.
pub fn delay_before_retry(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| full_jitter(attempt))
}

/// How rate limits count against `max_attempts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimits {
    /// Like any other failure (an async job: its caller waits on it).
    CountAsAttempts,
    /// Not at all: the caller's window bounds them instead (a batch line rides out 429s for up
    /// to its 24 h window, which is what a batch is for).
    RideOut,
}

/// Whether a failed upstream attempt is tried again, the window aside: never for a permanent
/// error; a rate limit always under [`RateLimits::RideOut`]; otherwise while fewer than
/// `max_attempts` attempts were made (bad JSON, truncated bodies, cut streams and 5xx end there).
pub fn tries_again(
    error: &UpstreamError,
    attempts: u32,
    max_attempts: u32,
    rate_limits: RateLimits,
) -> bool {
    if !error.is_retryable() {
        return false;
    }
    let rate_limited = matches!(error, UpstreamError::Status { status: 429, .. });
    (rate_limited && rate_limits == RateLimits::RideOut) || attempts < max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16) -> UpstreamError {
        UpstreamError::Status {
            status,
            error: None,
            retry_after: None,
            should_retry: None,
        }
    }

    #[test]
    fn every_retryable_error_but_a_ridden_out_rate_limit_ends_after_max_attempts() {
        let bad_body = UpstreamError::InvalidResponse("truncated".into());
        for error in [status(500), status(408), bad_body, UpstreamError::Timeout] {
            for rate_limits in [RateLimits::CountAsAttempts, RateLimits::RideOut] {
                assert!(tries_again(&error, 4, 5, rate_limits), "{error}");
                assert!(!tries_again(&error, 5, 5, rate_limits), "{error}");
            }
        }
        assert!(tries_again(&status(429), 500, 5, RateLimits::RideOut));
        assert!(!tries_again(
            &status(429),
            5,
            5,
            RateLimits::CountAsAttempts
        ));
    }

    #[test]
    fn a_permanent_error_is_never_tried_again() {
        for rate_limits in [RateLimits::CountAsAttempts, RateLimits::RideOut] {
            assert!(!tries_again(&status(400), 1, 5, rate_limits));
            assert!(!tries_again(
                &UpstreamError::NoRoute("m".into()),
                1,
                5,
                rate_limits
            ));
        }
    }

    #[test]
    fn jittered_delay_stays_under_the_exponential_ceiling() {
        for attempt in 1..12 {
            for _ in 0..50 {
                assert!(full_jitter(attempt) <= ceiling(attempt));
            }
        }
        assert_eq!(ceiling(1), BASE_DELAY);
        assert_eq!(ceiling(3), BASE_DELAY * 4);
        assert_eq!(ceiling(40), MAX_DELAY);
    }

    #[test]
    fn contention_backoff_grows_and_stays_within_twice_its_base() {
        for attempt in 0..10 {
            let base = Duration::from_millis(10 << attempt.min(6));
            let wait = contention_backoff(attempt);
            assert!(wait >= base && wait < base * 2, "{attempt}: {wait:?}");
        }
    }

    #[test]
    fn upstream_hint_wins_over_backoff() {
        assert_eq!(
            delay_before_retry(3, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }
}

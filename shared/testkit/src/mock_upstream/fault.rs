//! The fault vocabulary: which misbehaviour a request's `model` name asks the mock to perform.
//!
//! Faults are chosen by prefix and accept a free `-suffix`, so parallel tests pick distinct
//! model strings and never share the per-model counters that "first n calls" faults rely on.

use std::time::Duration;

/// What the mock does with a chat request, decided from its `model` alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Any model outside the vocabulary: answer like a healthy upstream.
    Healthy,
    /// `mock-slow-<ms>`: wait, then answer normally.
    Slow(Duration),
    /// `mock-429-<n>` / `mock-429ms-<n>`: the first `first` calls are rate limited.
    RateLimited { first: u64, hint: RetryHint },
    /// `mock-quota`: always 429 `insufficient_quota`, which clients must not retry.
    Quota,
    /// `mock-500-<n>`: the first `first` calls fail with a server error.
    ServerError { first: u64 },
    /// `mock-400`: always 400 `context_length_exceeded`.
    ContextLength,
    /// `mock-hang`: never answers.
    Hang,
    /// `mock-bad-json`: 200 with a body that is not JSON.
    BadJson,
    /// `mock-truncated`: 200 whose body stops short of its Content-Length.
    Truncated,
    /// `mock-sse-cut`: a stream cut in the middle of an event.
    SseCut,
    /// `mock-drip-<ms>`: a valid reply delivered in small pieces with a pause between them.
    Drip(Duration),
}

/// Which header a rate-limited reply uses to say when to come back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryHint {
    /// `retry-after: 1`
    Seconds,
    /// `retry-after-ms: 200`
    Millis,
}

impl Fault {
    pub(crate) fn from_model(model: &str) -> Self {
        // Checked first so the common healthy path costs a single prefix comparison.
        let Some(rest) = model.strip_prefix("mock-") else {
            return Self::Healthy;
        };
        if let Some(ms) = numbered(rest, "slow-") {
            return Self::Slow(Duration::from_millis(ms));
        }
        if let Some(first) = numbered(rest, "429-") {
            return Self::RateLimited {
                first,
                hint: RetryHint::Seconds,
            };
        }
        if let Some(first) = numbered(rest, "429ms-") {
            return Self::RateLimited {
                first,
                hint: RetryHint::Millis,
            };
        }
        if let Some(first) = numbered(rest, "500-") {
            return Self::ServerError { first };
        }
        if let Some(ms) = numbered(rest, "drip-") {
            return Self::Drip(Duration::from_millis(ms));
        }
        const BARE: [(&str, Fault); 6] = [
            ("quota", Fault::Quota),
            ("400", Fault::ContextLength),
            ("hang", Fault::Hang),
            ("bad-json", Fault::BadJson),
            ("truncated", Fault::Truncated),
            ("sse-cut", Fault::SseCut),
        ];
        BARE.iter()
            .find(|(name, _)| bare(rest, name))
            .map_or(Self::Healthy, |&(_, fault)| fault)
    }
}

/// Reads `<prefix><digits>` that ends the name or is followed by a `-suffix`.
fn numbered(rest: &str, prefix: &str) -> Option<u64> {
    let tail = rest.strip_prefix(prefix)?;
    let digits = tail.split_once('-').map_or(tail, |(digits, _)| digits);
    // `u64::from_str` would also take a leading `+`, which is not part of the vocabulary.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// True when `rest` is exactly `name` or `name-suffix`, so `mock-400x` stays a healthy model.
fn bare(rest: &str, name: &str) -> bool {
    rest.strip_prefix(name)
        .is_some_and(|tail| tail.is_empty() || tail.starts_with('-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn numbered_faults_take_their_number_and_ignore_the_suffix() {
        assert_eq!(Fault::from_model("mock-slow-250"), Fault::Slow(ms(250)));
        assert_eq!(Fault::from_model("mock-slow-5-test3"), Fault::Slow(ms(5)));
        assert_eq!(
            Fault::from_model("mock-429-2-test17"),
            Fault::RateLimited {
                first: 2,
                hint: RetryHint::Seconds
            }
        );
        assert_eq!(
            Fault::from_model("mock-429ms-1"),
            Fault::RateLimited {
                first: 1,
                hint: RetryHint::Millis
            }
        );
        assert_eq!(
            Fault::from_model("mock-500-3-x-y"),
            Fault::ServerError { first: 3 }
        );
        assert_eq!(Fault::from_model("mock-drip-10-a"), Fault::Drip(ms(10)));
    }

    #[test]
    fn bare_faults_accept_a_suffix() {
        assert_eq!(Fault::from_model("mock-quota"), Fault::Quota);
        assert_eq!(Fault::from_model("mock-quota-t1"), Fault::Quota);
        assert_eq!(Fault::from_model("mock-400-t1"), Fault::ContextLength);
        assert_eq!(Fault::from_model("mock-hang-t1"), Fault::Hang);
        assert_eq!(Fault::from_model("mock-bad-json-t1"), Fault::BadJson);
        assert_eq!(Fault::from_model("mock-truncated"), Fault::Truncated);
        assert_eq!(Fault::from_model("mock-sse-cut-9"), Fault::SseCut);
    }

    #[test]
    fn malformed_fault_names_are_healthy_models() {
        for model in [
            "gpt-4o-mini",
            "mock-slow-",
            "mock-slow-abc",
            "mock-slow-+5",
            "mock-4000",
            "mock-hangs",
            "mock-500",
            "mock",
            "",
        ] {
            assert_eq!(Fault::from_model(model), Fault::Healthy, "{model}");
        }
    }
}

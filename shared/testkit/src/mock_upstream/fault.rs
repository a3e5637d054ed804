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
    /// `mock-hangfirst-<n>`: the first `first` calls never answer; later ones are answered.
    HangFirst { first: u64 },
    /// `mock-bad-json`: 200 with a body that is not JSON.
    BadJson,
    /// `mock-truncated`: 200 whose body stops short of its Content-Length.
    Truncated,
    /// `mock-sse-cut`: a stream cut in the middle of an event.
    SseCut,
    /// `mock-drip-<ms>`: a valid reply delivered in small pieces with a pause between them.
    Drip(Duration),
    /// `mock-chaos-<ms>-<seed>`: wait, then misbehave at random (see [`Chaos`]).
    Chaos(Chaos),
    /// `mock-flexbusy-<n>`: of the first `first` calls, those asking for the flex tier get 429
    /// "resource unavailable"; standard-tier calls and later ones are answered.
    FlexBusy { first: u64 },
}

/// Faults drawn at random per call, for the fault matrix (bench/faults.sh): out of 100 calls,
/// 20 are rate limited (429 with `retry-after: 1`), 10 fail with a 500, 5 hang until the client
/// gives up, 2 send a truncated body, and the other 63 answer normally. The draw depends only on
/// the seed and the model's call number, so a run's sequence of faults is repeatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chaos {
    /// Waited before every call's draw, healthy or not.
    pub(crate) latency: Duration,
    pub(crate) seed: u64,
}

/// The mix, as cumulative per-10,000 thresholds in the order they are drawn.
const CHAOS_MIX: [(u64, Fault); 4] = [
    (
        2_000,
        Fault::RateLimited {
            first: u64::MAX,
            hint: RetryHint::Seconds,
        },
    ),
    (3_000, Fault::ServerError { first: u64::MAX }),
    (3_500, Fault::Hang),
    (3_700, Fault::Truncated),
];

impl Chaos {
    /// The fault of call number `call` (1-based): one of rate limited, server error, hang,
    /// truncated, or healthy.
    pub(crate) fn draw(self, call: u64) -> Fault {
        let roll = splitmix64(self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 10_000;
        CHAOS_MIX
            .iter()
            .find(|(below, _)| roll < *below)
            .map_or(Fault::Healthy, |&(_, fault)| fault)
    }
}

/// A well-mixed 64-bit hash (Steele, Lea and Flood's SplitMix64 finalizer): consecutive call
/// numbers give unrelated rolls.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Fault {
    /// The name `GET /_stats` counts a drawn fault under.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Fault::Healthy | Fault::Slow(_) | Fault::Drip(_) | Fault::Chaos(_) => "ok",
            Fault::RateLimited { .. } | Fault::Quota | Fault::FlexBusy { .. } => "429",
            Fault::ServerError { .. } => "500",
            Fault::ContextLength => "400",
            Fault::Hang | Fault::HangFirst { .. } => "hang",
            Fault::BadJson => "bad_json",
            Fault::Truncated => "truncated",
            Fault::SseCut => "sse_cut",
        }
    }
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
        if let Some(first) = numbered(rest, "hangfirst-") {
            return Self::HangFirst { first };
        }
        if let Some(first) = numbered(rest, "flexbusy-") {
            return Self::FlexBusy { first };
        }
        if let Some(ms) = numbered(rest, "drip-") {
            return Self::Drip(Duration::from_millis(ms));
        }
        if let Some((ms, seed)) = two_numbers(rest, "chaos-") {
            return Self::Chaos(Chaos {
                latency: Duration::from_millis(ms),
                seed,
            });
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
pub(crate) fn numbered(rest: &str, prefix: &str) -> Option<u64> {
    let tail = rest.strip_prefix(prefix)?;
    let digits = tail.split_once('-').map_or(tail, |(digits, _)| digits);
    // `u64::from_str` would also take a leading `+`, which is not part of the vocabulary.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads `<prefix><digits>-<digits>` that ends the name or is followed by a `-suffix`.
fn two_numbers(rest: &str, prefix: &str) -> Option<(u64, u64)> {
    let first = numbered(rest, prefix)?;
    let tail = rest.strip_prefix(prefix)?.split_once('-')?.1;
    let digits = tail.split_once('-').map_or(tail, |(digits, _)| digits);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((first, digits.parse().ok()?))
}

/// True when `rest` is exactly `name` or `name-suffix`, so `mock-400x` stays a healthy model.
pub(crate) fn bare(rest: &str, name: &str) -> bool {
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
    fn hangfirst_takes_how_many_calls_to_leave_unanswered() {
        assert_eq!(
            Fault::from_model("mock-hangfirst-1-job"),
            Fault::HangFirst { first: 1 }
        );
        assert_eq!(Fault::from_model("mock-hang-1-job"), Fault::Hang);
    }

    #[test]
    fn flexbusy_takes_how_many_flex_calls_to_refuse() {
        assert_eq!(
            Fault::from_model("mock-flexbusy-3-t1"),
            Fault::FlexBusy { first: 3 }
        );
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
    fn chaos_takes_latency_and_seed_and_ignores_the_suffix() {
        let chaos = |latency, seed| {
            Fault::Chaos(Chaos {
                latency: ms(latency),
                seed,
            })
        };
        assert_eq!(Fault::from_model("mock-chaos-20-7"), chaos(20, 7));
        assert_eq!(Fault::from_model("mock-chaos-0-42-async"), chaos(0, 42));
        for model in [
            "mock-chaos-20",
            "mock-chaos-20-",
            "mock-chaos--7",
            "mock-chaos-20-x",
        ] {
            assert_eq!(Fault::from_model(model), Fault::Healthy, "{model}");
        }
    }

    #[test]
    fn chaos_draws_are_repeatable_per_seed_and_call() {
        let chaos = Chaos {
            latency: ms(0),
            seed: 7,
        };
        let other = Chaos { seed: 8, ..chaos };
        let draws = |c: Chaos| (1..=200).map(|call| c.draw(call)).collect::<Vec<_>>();
        assert_eq!(draws(chaos), draws(chaos));
        assert_ne!(draws(chaos), draws(other));
    }

    #[test]
    fn chaos_draws_the_issue_mix_of_faults() {
        let chaos = Chaos {
            latency: ms(0),
            seed: 11,
        };
        let calls = 100_000;
        let mut counts = std::collections::HashMap::new();
        for call in 1..=calls {
            *counts.entry(chaos.draw(call).kind()).or_insert(0_u64) += 1;
        }
        // Per cent of calls, within half a point of the mix.
        for (kind, percent) in [
            ("429", 20),
            ("500", 10),
            ("hang", 5),
            ("truncated", 2),
            ("ok", 63),
        ] {
            let measured = counts.get(kind).copied().unwrap_or(0) * 100;
            assert!(
                measured.abs_diff(percent * calls) <= calls / 2,
                "{kind}: {} of {calls}",
                measured / 100
            );
        }
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

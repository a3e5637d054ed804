//! The usage counters `/v1/usage` reads: per tenant, UTC day, kind of work, model and tier, what
//! finished work added up to. Each is added to in the very write that finishes the work (a
//! job's outcome, a batch's end), under that write's condition, so a redelivered finish that
//! the store refuses adds nothing, and purging finished work takes nothing away.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batches::Usage;
use crate::clock::Timestamp;
use crate::jobs::JobKind;
use crate::pricing::{Billed, Tier, UsageByModel};
use crate::usage::UsageKind;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// How long counters are kept after their day: 400 days, so a month is comparable with the same
/// month a year before. Finished jobs and batches are purged long before; their counts stay.
pub const COUNTER_RETENTION: Duration = Duration::from_secs(400 * 24 * 60 * 60);

/// A UTC day, as days since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Day(pub i64);

impl Day {
    pub fn of(t: Timestamp) -> Day {
        Day(t.0.div_euclid(DAY_MS))
    }

    pub fn start(self) -> Timestamp {
        Timestamp(self.0.saturating_mul(DAY_MS))
    }

    pub fn end(self) -> Timestamp {
        Day(self.0.saturating_add(1)).start()
    }

    /// Until when a counter of this day is kept ([`COUNTER_RETENTION`] after the day ends).
    pub fn kept_until(self) -> Timestamp {
        self.end().plus(COUNTER_RETENTION)
    }
}

/// One counter's worth: requests and tokens of one kind of work, model and tier on one day. What
/// a finishing write adds, and what a read of the counters returns (summed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageCount {
    pub day: Day,
    pub kind: UsageKind,
    pub model: String,
    pub tier: Tier,
    pub requests: u64,
    pub usage: Usage,
}

impl UsageCount {
    /// What a completed job adds: one request of the model its result names (else the one it
    /// asked for), at the standard tier unless the result says flex. `None` when the result is
    /// not JSON: nothing to count.
    pub fn of_completed_job(
        kind: JobKind,
        requested_model: &str,
        result: &str,
        now: Timestamp,
    ) -> Option<UsageCount> {
        let billed = Billed::of_completion(result, Some(requested_model), Tier::Standard)?;
        Some(UsageCount {
            day: Day::of(now),
            kind: UsageKind::of_job(kind),
            model: billed.model,
            tier: billed.tier,
            requests: 1,
            usage: billed.usage,
        })
    }

    /// What a batch's end adds: its usage per model and tier, summed once from its output file.
    pub fn of_finished_batch(usage: &UsageByModel, now: Timestamp) -> Vec<UsageCount> {
        usage
            .entries()
            .map(|(key, tally)| UsageCount {
                day: Day::of(now),
                kind: UsageKind::Batch,
                model: key.model.clone(),
                tier: key.tier,
                requests: tally.requests,
                usage: tally.usage,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_runs_from_utc_midnight_to_the_next() {
        let noon = Timestamp(DAY_MS * 3 + DAY_MS / 2);
        assert_eq!(Day::of(noon), Day(3));
        assert_eq!(Day(3).start(), Timestamp(DAY_MS * 3));
        assert_eq!(Day::of(Day(3).end()), Day(4));
        assert_eq!(Day::of(Timestamp(DAY_MS * 4 - 1)), Day(3));
        assert!(Day(3).kept_until() > Day(3).end());
    }

    #[test]
    fn a_completed_job_counts_one_request_of_the_model_its_result_names() {
        let body = r#"{"model":"m-2024","service_tier":"flex",
            "usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        let count =
            UsageCount::of_completed_job(JobKind::Scheduled, "m", body, Timestamp(5)).unwrap();
        assert_eq!(
            (
                count.day,
                count.kind,
                count.model.as_str(),
                count.tier,
                count.requests
            ),
            (Day(0), UsageKind::Scheduled, "m-2024", Tier::Flex, 1)
        );
        assert_eq!(count.usage.total_tokens, 7);
        let bare = UsageCount::of_completed_job(JobKind::Async, "m", "{}", Timestamp(5)).unwrap();
        assert_eq!((bare.model.as_str(), bare.tier), ("m", Tier::Standard));
        assert_eq!(
            UsageCount::of_completed_job(JobKind::Async, "m", "not json", Timestamp(5)),
            None
        );
    }

    #[test]
    fn a_finished_batch_counts_each_model_and_tier_it_used() {
        let mut usage = UsageByModel::default();
        let one = Usage {
            input_tokens: 1,
            total_tokens: 1,
            ..Usage::default()
        };
        usage.add("a", Tier::Batch, &one);
        usage.add("a", Tier::Batch, &one);
        usage.add("a", Tier::Standard, &one);
        let counts = UsageCount::of_finished_batch(&usage, Timestamp(DAY_MS));
        let seen: Vec<_> = counts
            .iter()
            .map(|c| (c.day, c.kind, c.tier, c.requests))
            .collect();
        assert_eq!(
            seen,
            [
                (Day(1), UsageKind::Batch, Tier::Standard, 1),
                (Day(1), UsageKind::Batch, Tier::Batch, 2)
            ]
        );
    }
}

//! A tenant's usage and cost over a time range (`GET /v1/usage`): finished async, scheduled and
//! background work and batches, summed per kind, model and tier, by UTC day, and priced from the
//! price table.
//!
//! Read from the usage counters ([`counters`]) the stores add to in the write that finishes each
//! job and batch, not from the work itself: the read costs one query per store whatever the
//! tenant's volume, and purging finished work leaves past totals as they were.

pub mod counters;

use serde::Serialize;

use std::collections::BTreeMap;

use crate::batches::Usage;
use crate::clock::Timestamp;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::TenantId;
use crate::jobs::JobKind;
use crate::pricing::{Cost, PriceTable, Tier, UsageByModel};
use crate::usage::counters::{Day, UsageCount};

/// What kind of work a total counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum UsageKind {
    Async,
    Scheduled,
    /// Background responses.
    Response,
    Batch,
}

impl UsageKind {
    pub const ALL: [UsageKind; 4] = [
        UsageKind::Async,
        UsageKind::Scheduled,
        UsageKind::Response,
        UsageKind::Batch,
    ];

    /// The kinds a job store counts; a batch store counts [`UsageKind::Batch`].
    pub const OF_JOBS: [UsageKind; 3] =
        [UsageKind::Async, UsageKind::Scheduled, UsageKind::Response];

    pub fn as_str(self) -> &'static str {
        match self {
            UsageKind::Async => "async",
            UsageKind::Scheduled => "scheduled",
            UsageKind::Response => "response",
            UsageKind::Batch => "batch",
        }
    }

    pub fn parse(name: &str) -> Option<UsageKind> {
        UsageKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    pub fn of_job(kind: JobKind) -> UsageKind {
        match kind {
            JobKind::Async => UsageKind::Async,
            JobKind::Scheduled => UsageKind::Scheduled,
            JobKind::Response => UsageKind::Response,
        }
    }
}

/// The half-open range `[start, end)` a total covers, by when the work finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl TimeRange {
    /// From the query's `start_time` and `end_time` (Unix seconds); `end_time` defaults to now.
    pub fn parse(
        start: Option<&str>,
        end: Option<&str>,
        now: Timestamp,
    ) -> Result<Self, ServiceError> {
        let seconds = |value: &str, name: &'static str| {
            value
                .parse::<i64>()
                .ok()
                .filter(|s| *s >= 0)
                .and_then(|s| s.checked_mul(1000))
                .map(Timestamp)
                .ok_or_else(|| {
                    ServiceError::invalid(
                        format!("Invalid '{name}': expected Unix seconds."),
                        Some(name),
                        Some("invalid_value"),
                    )
                })
        };
        let start = match start {
            Some(value) => seconds(value, "start_time")?,
            None => {
                return Err(ServiceError::invalid(
                    "Missing required parameter: 'start_time'.",
                    Some("start_time"),
                    Some("missing_required_parameter"),
                ));
            }
        };
        let end = match end {
            Some(value) => seconds(value, "end_time")?,
            None => now,
        };
        if end <= start {
            return Err(ServiceError::invalid(
                "'end_time' must be after 'start_time'.",
                Some("end_time"),
                Some("invalid_value"),
            ));
        }
        Ok(TimeRange { start, end })
    }

    /// The UTC days the range touches, first and last: counters are kept per day, so a range
    /// counts every day it touches in full.
    pub fn days(&self) -> (Day, Day) {
        (Day::of(self.start), Day::of(Timestamp(self.end.0 - 1)))
    }
}

/// One line of the totals: a kind of work, a model and a tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    pub kind: UsageKind,
    pub model: String,
    pub tier: Tier,
    pub requests: u64,
    pub usage: Usage,
    /// `None` when the model has no price.
    pub cost: Option<Cost>,
}

/// A tenant's totals: one line per kind, model and tier, and their sum, over the whole range
/// and per UTC day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    pub range: TimeRange,
    pub lines: Vec<UsageLine>,
    pub requests: u64,
    pub usage: Usage,
    /// `None` when any line's model has no price.
    pub cost: Option<Cost>,
    /// The days with any usage, in order.
    pub days: Vec<DayTotals>,
}

/// One UTC day's totals (a bucket of the answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayTotals {
    pub day: Day,
    pub lines: Vec<UsageLine>,
    pub requests: u64,
    pub usage: Usage,
    pub cost: Option<Cost>,
}

/// Sums counters per kind and day, then prices them: the pure part of [`tenant_totals`].
#[derive(Debug, Default)]
pub struct Totals {
    by_day: BTreeMap<Day, ByKind>,
}

#[derive(Debug, Default, Clone)]
struct ByKind([UsageByModel; UsageKind::ALL.len()]);

impl ByKind {
    fn slot(&mut self, kind: UsageKind) -> &mut UsageByModel {
        let index = UsageKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &mut self.0[index]
    }

    fn merge(&mut self, other: &ByKind) {
        for (mine, theirs) in self.0.iter_mut().zip(&other.0) {
            mine.merge(theirs);
        }
    }

    /// Lines per kind, model and tier, their sum, and the cost (`None` if any line's is).
    fn priced(&self, prices: &PriceTable) -> (Vec<UsageLine>, u64, Usage, Option<Cost>) {
        let mut lines = Vec::new();
        let (mut requests, mut usage, mut cost) = (0, Usage::default(), Some(Cost::default()));
        for (kind, sum) in UsageKind::ALL.iter().zip(&self.0) {
            for (key, tally) in sum.entries() {
                let line_cost = prices.cost(&key.model, key.tier, &tally.usage);
                requests += tally.requests;
                usage.add(&tally.usage);
                cost = cost.zip(line_cost).map(|(a, b)| a.plus(b));
                lines.push(UsageLine {
                    kind: *kind,
                    model: key.model.clone(),
                    tier: key.tier,
                    requests: tally.requests,
                    usage: tally.usage,
                    cost: line_cost,
                });
            }
        }
        (lines, requests, usage, cost)
    }
}

impl Totals {
    /// Adds a counter read from a store; one of a day outside `range` counts nothing.
    pub fn add(&mut self, count: &UsageCount, range: &TimeRange) {
        let (first, last) = range.days();
        if count.day < first || count.day > last {
            return;
        }
        self.by_day
            .entry(count.day)
            .or_default()
            .slot(count.kind)
            .add_tally(
                crate::pricing::ModelTier {
                    model: count.model.clone(),
                    tier: count.tier,
                },
                crate::pricing::Tally {
                    requests: count.requests,
                    usage: count.usage,
                },
            );
    }

    pub fn priced(&self, range: TimeRange, prices: &PriceTable) -> UsageTotals {
        let mut all = ByKind::default();
        let mut days = Vec::new();
        for (day, by_kind) in &self.by_day {
            all.merge(by_kind);
            let (lines, requests, usage, cost) = by_kind.priced(prices);
            days.push(DayTotals {
                day: *day,
                lines,
                requests,
                usage,
                cost,
            });
        }
        let (lines, requests, usage, cost) = all.priced(prices);
        UsageTotals {
            range,
            lines,
            requests,
            usage,
            cost,
            days,
        }
    }
}

/// The tenant's totals over `range`: the job store's and the batch store's counters of the days
/// it touches, one read each.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn tenant_totals(
    deps: &Deps,
    tenant: &TenantId,
    range: TimeRange,
) -> Result<UsageTotals, ServiceError> {
    let (first, last) = range.days();
    let mut totals = Totals::default();
    for count in deps.jobs.usage_counts(tenant, first, last).await? {
        totals.add(&count, &range);
    }
    for count in deps.batches.usage_counts(tenant, first, last).await? {
        totals.add(&count, &range);
    }
    Ok(totals.priced(range, &deps.prices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pricing::{ModelPrice, PerMillion, Rates};

    const DAY_S: i64 = 24 * 60 * 60;

    fn at(seconds: i64) -> Timestamp {
        Timestamp(seconds * 1000)
    }

    /// Day 1 and day 2, whole.
    fn two_days() -> TimeRange {
        TimeRange {
            start: at(DAY_S),
            end: at(3 * DAY_S),
        }
    }

    fn job_result(kind: JobKind, finished: i64, model: &str) -> UsageCount {
        let body = r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#;
        UsageCount::of_completed_job(kind, model, body, at(finished)).unwrap()
    }

    fn one_dollar_per_million() -> PriceTable {
        let rate = PerMillion(1_000_000);
        PriceTable {
            models: vec![ModelPrice {
                model: "priced".into(),
                standard: Rates {
                    input: rate,
                    cached_input: rate,
                    output: rate,
                },
                batch: None,
                flex: None,
            }],
        }
    }

    #[test]
    fn counters_of_the_days_a_range_touches_count_and_split_by_day() {
        let mut totals = Totals::default();
        let range = two_days();
        totals.add(&job_result(JobKind::Async, DAY_S + 5, "priced"), &range);
        totals.add(&job_result(JobKind::Async, DAY_S + 6, "priced"), &range);
        totals.add(&job_result(JobKind::Scheduled, 2 * DAY_S, "priced"), &range);
        // Day 0 and day 3 are outside.
        totals.add(&job_result(JobKind::Async, DAY_S - 1, "priced"), &range);
        totals.add(&job_result(JobKind::Async, 3 * DAY_S, "priced"), &range);
        let priced = totals.priced(range, &one_dollar_per_million());
        let kinds: Vec<_> = priced.lines.iter().map(|l| (l.kind, l.requests)).collect();
        assert_eq!(kinds, [(UsageKind::Async, 2), (UsageKind::Scheduled, 1)]);
        assert_eq!(priced.usage.total_tokens, 45);
        assert_eq!(priced.cost.map(|c| c.to_string()), Some("0.000045".into()));
        let days: Vec<_> = priced.days.iter().map(|d| (d.day, d.requests)).collect();
        assert_eq!(days, [(Day(1), 2), (Day(2), 1)]);
        assert_eq!(
            priced.days[0].cost.map(|c| c.to_string()),
            Some("0.00003".into())
        );
    }

    #[test]
    fn a_range_within_a_day_counts_that_whole_day() {
        let range = TimeRange {
            start: at(DAY_S + 100),
            end: at(DAY_S + 200),
        };
        assert_eq!(range.days(), (Day(1), Day(1)));
        let mut totals = Totals::default();
        totals.add(&job_result(JobKind::Async, DAY_S + 5000, "priced"), &range);
        assert_eq!(totals.priced(range, &PriceTable::default()).requests, 1);
        // An end at midnight does not touch the day it starts.
        assert_eq!(two_days().days(), (Day(1), Day(2)));
    }

    #[test]
    fn every_kind_of_work_counts_under_its_own_kind() {
        let mut totals = Totals::default();
        for kind in JobKind::ALL {
            totals.add(&job_result(kind, DAY_S, "priced"), &two_days());
        }
        let priced = totals.priced(two_days(), &one_dollar_per_million());
        let kinds: Vec<_> = priced.lines.iter().map(|l| (l.kind, l.requests)).collect();
        assert_eq!(
            kinds,
            [
                (UsageKind::Async, 1),
                (UsageKind::Scheduled, 1),
                (UsageKind::Response, 1)
            ]
        );
        for kind in UsageKind::ALL {
            assert_eq!(UsageKind::parse(kind.as_str()), Some(kind));
        }
    }

    #[test]
    fn an_unpriced_model_has_no_cost_and_leaves_the_total_without_one() {
        let mut totals = Totals::default();
        totals.add(&job_result(JobKind::Async, DAY_S, "priced"), &two_days());
        totals.add(&job_result(JobKind::Async, DAY_S, "free"), &two_days());
        let priced = totals.priced(two_days(), &one_dollar_per_million());
        let free = priced.lines.iter().find(|l| l.model == "free").unwrap();
        assert_eq!(free.cost, None);
        assert_eq!(priced.cost, None);
        assert_eq!(priced.requests, 2);
    }

    #[test]
    fn the_range_needs_a_start_before_its_end() {
        let now = at(500);
        assert_eq!(
            TimeRange::parse(Some("100"), None, now).ok(),
            Some(TimeRange {
                start: at(100),
                end: now
            })
        );
        for (start, end) in [
            (None, None),
            (Some("x"), None),
            (Some("100"), Some("100")),
            (Some("-1"), None),
        ] {
            assert!(
                TimeRange::parse(start, end, now).is_err(),
                "{start:?} {end:?}"
            );
        }
    }
}

//! A tenant's usage and cost over a time range (`GET /v1/usage`): finished async and scheduled
//! jobs and batches, summed per kind, model and tier, and priced from the price table.
//!
//! Computed on read from the records the stores already keep and list per tenant (SQLite: the
//! tenant's index; DynamoDB: a query on the tenant's partition), so no write path carries an
//! extra counter and nothing can be counted twice: each finished job or batch is one record,
//! read once. The cost is one walk over the tenant's retained jobs and batches.

use serde::Serialize;

use crate::batches::{Batch, Usage};
use crate::clock::Timestamp;
use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::{BatchId, TenantId};
use crate::jobs::{Job, JobKind, JobStatus};
use crate::list::{ListQuery, MAX_LIMIT};
use crate::pricing::{Billed, Cost, PriceTable, Tier, UsageByModel};

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

    fn of_job(kind: JobKind) -> UsageKind {
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

    pub fn contains(&self, t: Timestamp) -> bool {
        self.start <= t && t < self.end
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

/// A tenant's totals: one line per kind, model and tier, and their sum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageTotals {
    pub range: TimeRange,
    pub lines: Vec<UsageLine>,
    pub requests: u64,
    pub usage: Usage,
    /// `None` when any line's model has no price.
    pub cost: Option<Cost>,
}

/// Sums finished work per kind, then prices it: the pure part of [`tenant_totals`].
#[derive(Debug, Default)]
pub struct Totals {
    by_kind: [UsageByModel; UsageKind::ALL.len()],
}

impl Totals {
    fn slot(&mut self, kind: UsageKind) -> &mut UsageByModel {
        let index = UsageKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        &mut self.by_kind[index]
    }

    /// Counts a job that completed within `range`; any other job counts nothing.
    pub fn add_job(&mut self, job: &Job, range: &TimeRange) {
        if job.status != JobStatus::Completed
            || !job.completed_at.is_some_and(|t| range.contains(t))
        {
            return;
        }
        let Some(billed) = job
            .result
            .as_deref()
            .and_then(|body| Billed::of_completion(body, Some(&job.model), Tier::Standard))
        else {
            return;
        };
        self.slot(UsageKind::of_job(job.kind))
            .add(&billed.model, billed.tier, &billed.usage);
    }

    /// Counts a batch that ended (completed, cancelled or expired) within `range`.
    pub fn add_batch(&mut self, batch: &Batch, range: &TimeRange) {
        let ended = batch
            .completed_at
            .or(batch.cancelled_at)
            .or(batch.expired_at);
        if ended.is_some_and(|t| range.contains(t)) {
            self.slot(UsageKind::Batch).merge(&batch.usage_by_model);
        }
    }

    pub fn priced(&self, range: TimeRange, prices: &PriceTable) -> UsageTotals {
        let mut lines = Vec::new();
        let (mut requests, mut usage, mut cost) = (0, Usage::default(), Some(Cost::default()));
        for (kind, sum) in UsageKind::ALL.iter().zip(&self.by_kind) {
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
        UsageTotals {
            range,
            lines,
            requests,
            usage,
            cost,
        }
    }
}

/// The tenant's totals over `range`: every retained finished job and batch, read once.
#[tracing::instrument(skip_all, fields(tenant = %tenant))]
pub async fn tenant_totals(
    deps: &Deps,
    tenant: &TenantId,
    range: TimeRange,
) -> Result<UsageTotals, ServiceError> {
    let mut totals = Totals::default();
    let now = deps.clock.now();
    for kind in JobKind::ALL {
        let mut query = ListQuery {
            limit: MAX_LIMIT,
            after: None,
            status: Some(JobStatus::Completed),
            scheduled_job_id: None,
        };
        loop {
            let page = deps.jobs.list(tenant, kind, &query, now).await?;
            for job in &page.items {
                totals.add_job(job, &range);
            }
            match page.items.last() {
                Some(last) if page.has_more => query.after = Some(last.id.clone()),
                _ => break,
            }
        }
    }
    let mut after: Option<BatchId> = None;
    loop {
        let page = deps.batches.list(tenant, MAX_LIMIT, after.as_ref()).await?;
        for batch in &page.items {
            totals.add_batch(batch, &range);
        }
        match page.items.last() {
            Some(last) if page.has_more => after = Some(last.id.clone()),
            _ => break,
        }
    }
    Ok(totals.priced(range, &deps.prices))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IdGenerator;
    use crate::pricing::{ModelPrice, PerMillion, Rates};

    fn at(seconds: i64) -> Timestamp {
        Timestamp(seconds * 1000)
    }

    fn range() -> TimeRange {
        TimeRange {
            start: at(100),
            end: at(200),
        }
    }

    fn job(kind: JobKind, status: JobStatus, completed: i64, model: &str) -> Job {
        Job {
            id: IdGenerator::new().job_id(Timestamp(0)),
            tenant: TenantId::parse("acme").unwrap(),
            kind,
            endpoint: crate::ApiEndpoint::ChatCompletions,
            status,
            model: model.into(),
            created_at: at(0),
            scheduled_at: None,
            scheduled_job_id: None,
            metadata: None,
            started_at: None,
            completed_at: Some(at(completed)),
            expires_at: None,
            result: Some(
                r#"{"usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15}}"#.into(),
            ),
            error: None,
            attempts: 1,
        }
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
    fn only_completed_jobs_finished_within_the_range_count() {
        let mut totals = Totals::default();
        totals.add_job(
            &job(JobKind::Async, JobStatus::Completed, 150, "priced"),
            &range(),
        );
        totals.add_job(
            &job(JobKind::Scheduled, JobStatus::Completed, 100, "priced"),
            &range(),
        );
        // The end is exclusive; failed jobs cost nothing.
        totals.add_job(
            &job(JobKind::Async, JobStatus::Completed, 200, "priced"),
            &range(),
        );
        totals.add_job(
            &job(JobKind::Async, JobStatus::Failed, 150, "priced"),
            &range(),
        );
        let priced = totals.priced(range(), &one_dollar_per_million());
        let kinds: Vec<_> = priced.lines.iter().map(|l| (l.kind, l.requests)).collect();
        assert_eq!(kinds, [(UsageKind::Async, 1), (UsageKind::Scheduled, 1)]);
        assert_eq!(priced.usage.total_tokens, 30);
        assert_eq!(priced.cost.map(|c| c.to_string()), Some("0.00003".into()));
    }

    #[test]
    fn every_kind_of_work_counts_under_its_own_kind() {
        let mut totals = Totals::default();
        for kind in JobKind::ALL {
            totals.add_job(&job(kind, JobStatus::Completed, 150, "priced"), &range());
        }
        let priced = totals.priced(range(), &one_dollar_per_million());
        let kinds: Vec<_> = priced.lines.iter().map(|l| (l.kind, l.requests)).collect();
        assert_eq!(
            kinds,
            [
                (UsageKind::Async, 1),
                (UsageKind::Scheduled, 1),
                (UsageKind::Response, 1)
            ]
        );
    }

    #[test]
    fn an_unpriced_model_has_no_cost_and_leaves_the_total_without_one() {
        let mut totals = Totals::default();
        totals.add_job(
            &job(JobKind::Async, JobStatus::Completed, 150, "priced"),
            &range(),
        );
        totals.add_job(
            &job(JobKind::Async, JobStatus::Completed, 150, "free"),
            &range(),
        );
        let priced = totals.priced(range(), &one_dollar_per_million());
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

//! `GET /v1/usage`: the caller's requests, tokens and cost over a time range, by kind of work,
//! model and tier, in total and in daily buckets.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use prism_core::TenantId;
use prism_core::batches::Usage;
use prism_core::pricing::{Cost, Tier};
use prism_core::usage::{TimeRange, UsageKind, UsageLine, UsageTotals, tenant_totals};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::{ErrorResponse, UsageParams};
use crate::request::QueryParams;
use crate::routes::AppState;

/// `?start_time=` (required) and `?end_time=` (default now), Unix seconds, by when work finished;
/// counted per UTC day, so every day the range touches counts whole.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    params(UsageParams),
    responses(
        (status = 200, description = "The caller's requests, tokens and cost in the range, by kind, model and tier, in total and per UTC day.", body = UsageObject),
        (status = 400, description = "The range is not valid; `param` names what.", body = ErrorResponse),
    ),
)]
pub async fn totals(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let range = TimeRange::parse(
        params.get("start_time"),
        params.get("end_time"),
        state.deps.clock.now(),
    )?;
    let totals = tenant_totals(&state.deps, &tenant, range).await?;
    Ok(Json(UsageObject::from_totals(&totals)).into_response())
}

#[derive(Serialize, ToSchema)]
#[schema(as = Usage)]
pub struct UsageObject<'a> {
    object: &'static str,
    start_time: i64,
    end_time: i64,
    data: Vec<UsageLineObject<'a>>,
    total: TotalObject,
    /// One per UTC day with any usage, in order, as OpenAI's usage API buckets by day.
    buckets: Vec<BucketObject<'a>>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = UsageBucket)]
pub struct BucketObject<'a> {
    object: &'static str,
    /// The day's UTC midnight (Unix seconds).
    start_time: i64,
    /// The next day's UTC midnight.
    end_time: i64,
    data: Vec<UsageLineObject<'a>>,
    total: TotalObject,
}

#[derive(Serialize, ToSchema)]
#[schema(as = UsageLine)]
pub struct UsageLineObject<'a> {
    kind: UsageKind,
    model: &'a str,
    tier: Tier,
    requests: u64,
    #[serde(flatten)]
    tokens: Tokens,
    /// `null` when the model has no price.
    cost_usd: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = UsageTotal)]
pub struct TotalObject {
    requests: u64,
    #[serde(flatten)]
    tokens: Tokens,
    /// `null` when any model counted has no price.
    cost_usd: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = UsageTokens)]
pub struct Tokens {
    input_tokens: u64,
    cached_tokens: u64,
    output_tokens: u64,
    reasoning_tokens: u64,
    total_tokens: u64,
}

impl From<&Usage> for Tokens {
    fn from(u: &Usage) -> Self {
        Tokens {
            input_tokens: u.input_tokens,
            cached_tokens: u.cached_tokens,
            output_tokens: u.output_tokens,
            reasoning_tokens: u.reasoning_tokens,
            total_tokens: u.total_tokens,
        }
    }
}

fn usd(cost: Option<Cost>) -> Option<String> {
    cost.map(|c| c.to_string())
}

fn lines(lines: &[UsageLine]) -> Vec<UsageLineObject<'_>> {
    lines
        .iter()
        .map(|line| UsageLineObject {
            kind: line.kind,
            model: &line.model,
            tier: line.tier,
            requests: line.requests,
            tokens: Tokens::from(&line.usage),
            cost_usd: usd(line.cost),
        })
        .collect()
}

impl<'a> UsageObject<'a> {
    fn from_totals(totals: &'a UsageTotals) -> Self {
        UsageObject {
            object: "prism.usage",
            start_time: totals.range.start.unix_seconds(),
            end_time: totals.range.end.unix_seconds(),
            data: lines(&totals.lines),
            total: TotalObject {
                requests: totals.requests,
                tokens: Tokens::from(&totals.usage),
                cost_usd: usd(totals.cost),
            },
            buckets: totals
                .days
                .iter()
                .map(|day| BucketObject {
                    object: "bucket",
                    start_time: day.day.start().unix_seconds(),
                    end_time: day.day.end().unix_seconds(),
                    data: lines(&day.lines),
                    total: TotalObject {
                        requests: day.requests,
                        tokens: Tokens::from(&day.usage),
                        cost_usd: usd(day.cost),
                    },
                })
                .collect(),
        }
    }
}

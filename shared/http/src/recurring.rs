//! The recurring side of `/v1/scheduled`: the schedule object clients see, the handlers of
//! pause, resume and runs, and the list of both kinds. Create, read and delete share their routes with one-time scheduled
//! jobs (`routes`), which ask here first.

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use prism_core::TenantId;
use prism_core::clock::format_rfc3339;
use prism_core::list::ListQuery;
use prism_core::metadata::Metadata;
use prism_core::recurring::listing::{self, ScheduledEntry, ScheduledListQuery};
use prism_core::recurring::{Recurring, service};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::{
    ErrorResponse, IdParam, JobListParams, ScheduledListObject, ScheduledListParams, names,
};
use crate::request::{IdPath, QueryParams};
use crate::routes::AppState;
use crate::wire::{JobObject, ListObject};

#[derive(Serialize, ToSchema)]
#[schema(as = Schedule)]
struct ScheduleObject<'a> {
    cron: &'a str,
    timezone: &'a str,
    start_at: Option<String>,
    end_at: Option<String>,
    max_runs: Option<u32>,
    #[schema(schema_with = names::overlap_policy)]
    overlap: &'static str,
    #[schema(schema_with = names::catch_up_policy)]
    catch_up: &'static str,
}

/// A recurring scheduled job: a one-time one's fields where they mean the same, plus its
/// `schedule` and run counters.
#[derive(Serialize, ToSchema)]
#[schema(as = RecurringSchedule)]
pub struct RecurringObject<'a> {
    id: &'a str,
    #[schema(schema_with = names::scheduled_job)]
    object: &'static str,
    /// Always `recurring`: what tells a recurring job from a one-time one in the list (one-time
    /// jobs keep the shape they had before recurring ones existed, without `type`).
    #[serde(rename = "type")]
    kind: &'static str,
    job_id: &'a str,
    #[schema(schema_with = names::recurring_status)]
    status: &'static str,
    /// The endpoint each run calls; a run's `result` is that endpoint's response.
    #[schema(schema_with = names::api_endpoint)]
    endpoint: &'static str,
    model: &'a str,
    schedule: ScheduleObject<'a>,
    next_run_at: Option<String>,
    last_run_at: Option<String>,
    run_count: u32,
    skipped_count: u32,
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    metadata: Option<&'a Metadata>,
    created_at: i64,
    /// When it became finished or cancelled.
    completed_at: Option<i64>,
}

impl<'a> RecurringObject<'a> {
    pub fn from_schedule(s: &'a Recurring) -> Self {
        let r = &s.recurrence;
        Self {
            id: s.id.as_str(),
            object: "scheduled.job",
            kind: "recurring",
            job_id: s.id.as_str(),
            status: s.status.as_str(),
            endpoint: s.endpoint.path(),
            model: &s.model,
            schedule: ScheduleObject {
                cron: r.cron.as_str(),
                timezone: &r.timezone,
                start_at: r.start_at.map(format_rfc3339),
                end_at: r.end_at.map(format_rfc3339),
                max_runs: r.max_runs,
                overlap: r.overlap.as_str(),
                catch_up: r.catch_up.as_str(),
            },
            next_run_at: s.next_run_at.map(format_rfc3339),
            last_run_at: s.last_run_at.map(format_rfc3339),
            run_count: s.run_count,
            skipped_count: s.skipped_count,
            metadata: s.metadata.as_ref(),
            created_at: s.created_at.unix_seconds(),
            completed_at: s.ended_at.map(|t| t.unix_seconds()),
        }
    }
}

pub fn schedule_response(schedule: &Recurring) -> Response {
    Json(RecurringObject::from_schedule(schedule)).into_response()
}

#[utoipa::path(
    post,
    path = "/v1/scheduled/{id}/pause",
    tag = "scheduled",
    params(IdParam),
    responses(
        (status = 200, description = "The schedule, `paused`.", body = RecurringObject),
        (status = 404, description = "No recurring schedule with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The schedule is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn pause(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let schedule = service::pause_recurring(&state.deps, &tenant, &id).await?;
    Ok(schedule_response(&schedule))
}

#[utoipa::path(
    post,
    path = "/v1/scheduled/{id}/resume",
    tag = "scheduled",
    params(IdParam),
    responses(
        (status = 200, description = "The schedule, `active` (or `finished` past its end).", body = RecurringObject),
        (status = 404, description = "No recurring schedule with this id for this key.", body = ErrorResponse),
        (status = 409, description = "The schedule is in a status that does not allow this.", body = ErrorResponse),
    ),
)]
pub async fn resume(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
) -> Result<Response, ApiError> {
    let schedule = service::resume_recurring(&state.deps, &tenant, &id).await?;
    Ok(schedule_response(&schedule))
}

/// `GET /v1/scheduled/{id}/runs`: newest first, `limit`/`after` pages, `status` filter.
#[utoipa::path(
    get,
    path = "/v1/scheduled/{id}/runs",
    tag = "scheduled",
    params(IdParam, JobListParams),
    responses(
        (status = 200, description = "A page of the schedule's runs, newest first.", body = crate::wire::ListObject),
        (status = 404, description = "No recurring schedule with this id for this key.", body = ErrorResponse),
    ),
)]
pub async fn runs(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    IdPath(id): IdPath,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let query = ListQuery::parse(
        params.get("limit"),
        params.get("after"),
        params.get("status"),
    )?;
    let page = service::list_runs(&state.deps, &tenant, &id, &query).await?;
    Ok(Json(ListObject::from_page(&page, &state.deps.prices)).into_response())
}

/// An entry of `GET /v1/scheduled`: a one-time job as it always was, or a recurring one.
#[derive(Serialize)]
#[serde(untagged)]
enum ScheduledObject<'a> {
    Once(JobObject<'a>),
    Recurring(RecurringObject<'a>),
}

#[derive(Serialize)]
struct ScheduledList<'a> {
    object: &'static str,
    data: Vec<ScheduledObject<'a>>,
    first_id: Option<&'a str>,
    last_id: Option<&'a str>,
    has_more: bool,
}

/// `GET /v1/scheduled`: one-time and recurring jobs, newest first; `limit`, `after`, `status`
/// (either kind's), `type` (`once` or `recurring`).
#[utoipa::path(
    get,
    path = "/v1/scheduled",
    tag = "scheduled",
    params(ScheduledListParams),
    responses(
        (status = 200, description = "A page of one-time scheduled jobs and recurring schedules, newest first.", body = ScheduledListObject),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    Extension(tenant): Extension<TenantId>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let query = ScheduledListQuery::parse(
        params.get("limit"),
        params.get("after"),
        params.get("status"),
        params.get("type"),
    )?;
    let page = listing::list_scheduled(&state.deps, &tenant, &query).await?;
    let data = page
        .items
        .iter()
        .map(|entry| match entry {
            ScheduledEntry::Once(job) => {
                ScheduledObject::Once(JobObject::from_job(job, &state.deps.prices))
            }
            ScheduledEntry::Recurring(s) => {
                ScheduledObject::Recurring(RecurringObject::from_schedule(s))
            }
        })
        .collect();
    Ok(Json(ScheduledList {
        object: "list",
        data,
        first_id: page.items.first().map(|e| e.id().as_str()),
        last_id: page.items.last().map(|e| e.id().as_str()),
        has_more: page.has_more,
    })
    .into_response())
}

/// `?cancel_running=true` on DELETE; anything but `true`/`false` is refused.
pub fn cancel_running(params: &QueryParams) -> Result<bool, ApiError> {
    match params.get("cancel_running") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(prism_core::ServiceError::invalid(
            "Invalid 'cancel_running': expected true or false.",
            Some("cancel_running"),
            Some("invalid_value"),
        )
        .into()),
    }
}

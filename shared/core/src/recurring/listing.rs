//! The one list behind `GET /v1/scheduled`: one-time scheduled jobs and recurring schedules
//! together, newest first by id (both are `sched_` ids from the same generator), with a
//! `status` filter that speaks either kind's statuses and a `type` filter for one kind.

use crate::deps::Deps;
use crate::error::ServiceError;
use crate::ids::{JobId, TenantId};
use crate::jobs::{Job, JobKind, JobStatus};
use crate::list::{ListQuery, Page};
use crate::recurring::{Recurring, RecurringStatus};

/// Recurring schedules read per store call while a status filter skips some.
const RECURRING_READ: usize = 100;

/// Which of the two kinds a list holds, and the status each must have (`None`: any).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledListQuery {
    pub limit: usize,
    pub after: Option<JobId>,
    /// `None`: no one-time jobs in this list.
    pub once: Option<Option<JobStatus>>,
    /// `None`: no recurring schedules in this list.
    pub recurring: Option<Option<RecurringStatus>>,
}

impl ScheduledListQuery {
    /// `status` is a one-time job's (`pending`, `running`, `completed`, `failed`) or a recurring
    /// schedule's (`active`, `paused`, `finished`); `cancelled` is both kinds'. `type` is `once`
    /// or `recurring`.
    pub fn parse(
        limit: Option<&str>,
        after: Option<&str>,
        status: Option<&str>,
        kind: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let page = ListQuery::parse(limit, after, None)?;
        let (mut once, mut recurring) = match kind {
            None | Some("") => (Some(None), Some(None)),
            Some("once") => (Some(None), None),
            Some("recurring") => (None, Some(None)),
            Some(other) => {
                return Err(ServiceError::invalid(
                    format!("Invalid 'type': '{other}'. Expected once or recurring."),
                    Some("type"),
                    Some("invalid_value"),
                ));
            }
        };
        if let Some(s) = status.filter(|s| !s.is_empty()) {
            let (once_status, recurring_status) = (JobStatus::parse(s), RecurringStatus::parse(s));
            if once_status.is_none() && recurring_status.is_none() {
                return Err(ServiceError::invalid(
                    format!(
                        "Invalid 'status': '{s}'. Expected one of pending, running, completed, failed, cancelled (one-time jobs) or active, paused, finished, cancelled (recurring ones)."
                    ),
                    Some("status"),
                    Some("invalid_value"),
                ));
            }
            // A status only one kind has leaves the other kind out.
            once = once.and(once_status.map(Some));
            recurring = recurring.and(recurring_status.map(Some));
        }
        Ok(Self {
            limit: page.limit,
            after: page.after,
            once,
            recurring,
        })
    }
}

/// One entry of the list.
#[derive(Debug, Clone, PartialEq)]
pub enum ScheduledEntry {
    Once(Box<Job>),
    Recurring(Box<Recurring>),
}

impl ScheduledEntry {
    pub fn id(&self) -> &JobId {
        match self {
            ScheduledEntry::Once(job) => &job.id,
            ScheduledEntry::Recurring(schedule) => &schedule.id,
        }
    }
}

/// The newest `limit` of two newest-first pages read from the same cursor. Each page holds the
/// newest `limit` of its kind, so the merged newest `limit` are all among them; more follow when
/// either kind had more or the two together overflow.
pub fn merge_newest_first(
    once: Page<Job>,
    recurring: Page<Recurring>,
    limit: usize,
) -> Page<ScheduledEntry> {
    let more_of_either = once.has_more || recurring.has_more;
    let mut items: Vec<ScheduledEntry> = once
        .items
        .into_iter()
        .map(|job| ScheduledEntry::Once(Box::new(job)))
        .chain(
            recurring
                .items
                .into_iter()
                .map(|s| ScheduledEntry::Recurring(Box::new(s))),
        )
        .collect();
    items.sort_by(|a, b| b.id().cmp(a.id()));
    let has_more = more_of_either || items.len() > limit;
    items.truncate(limit);
    Page { items, has_more }
}

fn empty<T>() -> Page<T> {
    Page {
        items: Vec::new(),
        has_more: false,
    }
}

/// `GET /v1/scheduled`: both kinds, newest first.
pub async fn list_scheduled(
    deps: &Deps,
    tenant: &TenantId,
    query: &ScheduledListQuery,
) -> Result<Page<ScheduledEntry>, ServiceError> {
    let once = match query.once {
        Some(status) => {
            let jobs_query = ListQuery {
                limit: query.limit,
                after: query.after.clone(),
                status,
                scheduled_job_id: None,
            };
            deps.jobs
                .list(tenant, JobKind::Scheduled, &jobs_query, deps.clock.now())
                .await?
        }
        None => empty(),
    };
    let recurring = match query.recurring {
        Some(status) => recurring_page(deps, tenant, query, status).await?,
        None => empty(),
    };
    Ok(merge_newest_first(once, recurring, query.limit))
}

/// The newest `limit` recurring schedules after the cursor with this status (the store lists
/// them all; a filtered page reads on until it is full).
async fn recurring_page(
    deps: &Deps,
    tenant: &TenantId,
    query: &ScheduledListQuery,
    status: Option<RecurringStatus>,
) -> Result<Page<Recurring>, ServiceError> {
    let read = if status.is_some() {
        RECURRING_READ
    } else {
        query.limit
    };
    let mut cursor = query.after.clone();
    let mut items = Vec::new();
    loop {
        let page = deps.recurring.list(tenant, read, cursor.as_ref()).await?;
        cursor = page.items.last().map(|s| s.id.clone());
        items.extend(
            page.items
                .into_iter()
                .filter(|s| status.is_none_or(|want| s.status == want)),
        );
        if items.len() > query.limit {
            items.truncate(query.limit);
            return Ok(Page {
                items,
                has_more: true,
            });
        }
        if !page.has_more || cursor.is_none() {
            return Ok(Page {
                items,
                has_more: false,
            });
        }
        if status.is_none() && items.len() == query.limit {
            // Unfiltered and full, with more stored.
            return Ok(Page {
                items,
                has_more: true,
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(status: Option<&str>, kind: Option<&str>) -> ScheduledListQuery {
        ScheduledListQuery::parse(None, None, status, kind).unwrap()
    }

    #[test]
    fn a_list_without_filters_holds_both_kinds_in_any_status() {
        let q = parse(None, None);
        assert_eq!((q.once, q.recurring), (Some(None), Some(None)));
    }

    #[test]
    fn a_status_only_one_kind_has_leaves_the_other_kind_out() {
        let q = parse(Some("active"), None);
        assert_eq!(
            (q.once, q.recurring),
            (None, Some(Some(RecurringStatus::Active)))
        );
        let q = parse(Some("completed"), None);
        assert_eq!(
            (q.once, q.recurring),
            (Some(Some(JobStatus::Completed)), None)
        );
    }

    #[test]
    fn cancelled_filters_both_kinds() {
        let q = parse(Some("cancelled"), None);
        assert_eq!(
            (q.once, q.recurring),
            (
                Some(Some(JobStatus::Cancelled)),
                Some(Some(RecurringStatus::Cancelled))
            )
        );
    }

    #[test]
    fn a_type_filter_keeps_one_kind() {
        assert_eq!(parse(None, Some("once")).recurring, None);
        assert_eq!(parse(None, Some("recurring")).once, None);
        // A recurring status with type=once matches nothing, and is no error.
        let q = parse(Some("paused"), Some("once"));
        assert_eq!((q.once, q.recurring), (None, None));
    }

    #[test]
    fn unknown_status_or_type_is_a_400_naming_its_param() {
        for (status, kind, param) in [
            (Some("queued"), None, "status"),
            (None, Some("weekly"), "type"),
        ] {
            let Err(ServiceError::InvalidRequest { param: got, .. }) =
                ScheduledListQuery::parse(None, None, status, kind)
            else {
                panic!("expected a 400 for {status:?} {kind:?}");
            };
            assert_eq!(got.as_deref(), Some(param));
        }
    }
}

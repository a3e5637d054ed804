//! OpenAI-style cursor pagination: `limit`, `after`, and a page that knows whether more follow.

use crate::error::ServiceError;
use crate::ids::JobId;
use crate::jobs::JobStatus;

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub limit: usize,
    /// Newest first: the page holds ids strictly older than this one.
    pub after: Option<JobId>,
    pub status: Option<JobStatus>,
    /// Only the runs of this recurring schedule.
    pub scheduled_job_id: Option<JobId>,
}

impl ListQuery {
    /// Parses the query-string values a client sent.
    pub fn parse(
        limit: Option<&str>,
        after: Option<&str>,
        status: Option<&str>,
    ) -> Result<Self, ServiceError> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                _ => {
                    return Err(ServiceError::invalid(
                        format!("Invalid 'limit': expected an integer from 1 to {MAX_LIMIT}."),
                        Some("limit"),
                        Some("invalid_value"),
                    ));
                }
            },
        };
        let after = match after {
            None | Some("") => None,
            Some(s) => Some(JobId::parse(s).ok_or_else(|| {
                ServiceError::invalid(
                    "Invalid 'after': not an id from this list.",
                    Some("after"),
                    Some("invalid_value"),
                )
            })?),
        };
        let status = match status {
            None | Some("") => None,
            Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
                ServiceError::invalid(
                    format!(
                        "Invalid 'status': '{s}'. Expected one of pending, running, completed, failed, cancelled."
                    ),
                    Some("status"),
                    Some("invalid_value"),
                )
            })?),
        };
        Ok(Self {
            limit,
            after,
            status,
            scheduled_job_id: None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_more: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_outside_one_to_a_hundred_is_rejected() {
        assert!(ListQuery::parse(Some("0"), None, None).is_err());
        assert!(ListQuery::parse(Some("101"), None, None).is_err());
        assert_eq!(
            ListQuery::parse(None, None, None).unwrap().limit,
            DEFAULT_LIMIT
        );
    }

    #[test]
    fn unknown_status_filter_is_rejected() {
        assert!(ListQuery::parse(None, None, Some("queued")).is_err());
        assert_eq!(
            ListQuery::parse(None, None, Some("running"))
                .unwrap()
                .status,
            Some(JobStatus::Running)
        );
    }
}

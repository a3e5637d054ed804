//! Recurring scheduled requests: a cron expression in a time zone that creates one async job
//! (a run, toward the schedule's endpoint) per firing. The model here; [`cron`] says when it fires, [`request`] reads a create
//! request, [`decisions`] holds the state machine and what a firing does, [`service`] the HTTP
//! services and [`fire`] the stage that handles a firing.

use std::fmt;

use chrono_tz::Tz;

use crate::clock::Timestamp;
use crate::ids::{JobId, TenantId};
use crate::metadata::Metadata;

pub mod cron;
pub mod decisions;
pub mod fire;
pub mod listing;
pub mod request;
pub mod service;

use self::cron::CronExpr;

/// Where a recurring schedule is in its life (the state machine is
/// [`RecurringStatus::can_become`]; ARCHITECTURE.md draws it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecurringStatus {
    /// Fires at each fire time.
    Active,
    /// Keeps its definition but does not fire; resume makes it active again.
    Paused,
    /// Ran out: `max_runs` runs made, or no fire time left before `end_at`.
    Finished,
    /// Deleted by its owner.
    Cancelled,
}

impl RecurringStatus {
    pub const ALL: [RecurringStatus; 4] = [
        RecurringStatus::Active,
        RecurringStatus::Paused,
        RecurringStatus::Finished,
        RecurringStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RecurringStatus::Active => "active",
            RecurringStatus::Paused => "paused",
            RecurringStatus::Finished => "finished",
            RecurringStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, RecurringStatus::Finished | RecurringStatus::Cancelled)
    }

    /// The state machine every store enforces (through [`decisions`] and versioned writes).
    pub fn can_become(self, next: RecurringStatus) -> bool {
        use RecurringStatus::*;
        matches!(
            (self, next),
            (Active, Paused)
                | (Paused, Active)
                | (Active, Finished) // the last run made, or no fire time left
                | (Paused, Finished) // resumed after end_at passed
                | (Active, Cancelled)
                | (Paused, Cancelled)
        )
    }
}

/// What a firing does while the schedule's previous run is still pending or running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlapPolicy {
    /// No new run; the firing is counted as skipped (the default).
    #[default]
    Skip,
    /// A new run alongside the previous one.
    Allow,
}

impl OverlapPolicy {
    pub const ALL: [OverlapPolicy; 2] = [OverlapPolicy::Skip, OverlapPolicy::Allow];

    pub fn as_str(self) -> &'static str {
        match self {
            OverlapPolicy::Skip => "skip",
            OverlapPolicy::Allow => "allow",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// What a firing delivered late (after downtime) does. Never more than one run for all the fire
/// times an outage spanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CatchUpPolicy {
    /// One run, for the latest fire time missed (the default).
    #[default]
    Latest,
    /// No run for a fire time more than [`decisions::ON_TIME`] past; wait for the next one.
    Skip,
}

impl CatchUpPolicy {
    pub const ALL: [CatchUpPolicy; 2] = [CatchUpPolicy::Latest, CatchUpPolicy::Skip];

    pub fn as_str(self) -> &'static str {
        match self {
            CatchUpPolicy::Latest => "latest",
            CatchUpPolicy::Skip => "skip",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// When a schedule fires: the `schedule` object of the API.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    pub cron: CronExpr,
    /// The IANA name as given (`Europe/Berlin`).
    pub timezone: String,
    pub zone: Tz,
    pub start_at: Option<Timestamp>,
    pub end_at: Option<Timestamp>,
    pub max_runs: Option<u32>,
    pub overlap: OverlapPolicy,
    pub catch_up: CatchUpPolicy,
}

impl Recurrence {
    /// Rebuilds a stored recurrence; `None` when the stored text no longer parses.
    #[allow(clippy::too_many_arguments)]
    pub fn from_stored(
        cron: &str,
        timezone: &str,
        start_at: Option<Timestamp>,
        end_at: Option<Timestamp>,
        max_runs: Option<u32>,
        overlap: &str,
        catch_up: &str,
    ) -> Option<Self> {
        Some(Self {
            cron: cron::parse_cron(cron).ok()?,
            timezone: timezone.to_owned(),
            zone: cron::parse_zone(timezone)?,
            start_at,
            end_at,
            max_runs,
            overlap: OverlapPolicy::parse(overlap)?,
            catch_up: CatchUpPolicy::parse(catch_up)?,
        })
    }
}

/// Names a recurring schedule outside the HTTP layer; the owner is part of the key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RecurringRef {
    pub tenant: TenantId,
    pub id: JobId,
}

impl fmt::Display for RecurringRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.id)
    }
}

/// A recurring schedule as the store holds it (its request body is kept beside it).
#[derive(Debug, Clone, PartialEq)]
pub struct Recurring {
    pub id: JobId,
    pub tenant: TenantId,
    pub status: RecurringStatus,
    /// The endpoint every run calls; each run's `result` is its response.
    pub endpoint: crate::ApiEndpoint,
    pub model: String,
    pub metadata: Option<Metadata>,
    pub recurrence: Recurrence,
    pub created_at: Timestamp,
    /// When it fires next; `None` once finished, cancelled, or while paused.
    pub next_run_at: Option<Timestamp>,
    /// The fire time of the latest run made.
    pub last_run_at: Option<Timestamp>,
    /// The latest fire time handled (a run made or skipped): firings at or before it are
    /// duplicates.
    pub last_fire_at: Option<Timestamp>,
    pub run_count: u32,
    /// Fire times handled without a run (overlap, catch-up).
    pub skipped_count: u32,
    /// When it became finished or cancelled.
    pub ended_at: Option<Timestamp>,
    /// Bumped by every write; writes are conditional on it.
    pub version: i64,
}

impl Recurring {
    pub fn recurring_ref(&self) -> RecurringRef {
        RecurringRef {
            tenant: self.tenant.clone(),
            id: self.id.clone(),
        }
    }
}

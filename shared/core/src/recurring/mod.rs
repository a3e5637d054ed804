//! Recurring scheduled completions: a cron expression in a time zone that creates one async
//! job (a run) per firing.

pub mod cron;

//! Core's orchestration (the job worker, the batch stages, the services and the reconciler) run
//! against in-memory ports and a scripted upstream, on tokio's paused clock: no SQLite, network
//! or emulator, and a whole retry or lease expiry takes no real time.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failures panic

#[path = "../support/mod.rs"]
mod support;

mod batches;
mod files;
mod jobs;
mod native_reads;
mod reconcile;
mod recurring;
mod uploads;
mod webhooks;

//! Test doubles shared by Prism's crates: a mock OpenAI-compatible upstream whose `model` names
//! select injected faults, so gateway tests and benches can exercise every failure path locally.

pub mod mock_upstream;

pub use mock_upstream::{MockUpstream, StatsSnapshot, spawn_mock_upstream};

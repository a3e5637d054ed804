//! Test support shared by Prism's crates: a mock OpenAI-compatible upstream whose `model` names
//! select injected faults, a manual clock, and the contract suites every adapter of a port runs.

pub mod clock;
pub mod contracts;
pub mod mock_upstream;

pub use clock::{ManualClock, TestClock};
pub use mock_upstream::{MockUpstream, StatsSnapshot, spawn_mock_upstream};

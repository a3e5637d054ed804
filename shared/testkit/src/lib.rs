//! Test support shared by Prism's crates: a mock OpenAI-compatible upstream whose `model` names
//! select injected faults, a fault-injecting proxy for the AWS emulator, a manual clock, the contract suites every adapter of a port runs, and (feature `aws`) the
//! schedule pump the emulator lacks.

pub mod chaos;
pub mod clock;
pub mod contracts;
pub mod fault_proxy;
pub mod mock_upstream;
#[cfg(feature = "aws")]
pub mod schedule_pump;

pub use clock::{ManualClock, TestClock};
pub use mock_upstream::{MockUpstream, StatsSnapshot, spawn_mock_upstream};

//! The `prism` binary's library half: configuration, the embedded wiring of every port, and the
//! commands (`serve`, `keys`). `main.rs` only parses arguments and reports errors.

pub mod cli;
pub mod keys;
pub mod serve;

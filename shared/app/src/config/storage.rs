//! `[storage]`: the embedded store's group commit.

use serde::Deserialize;

/// The embedded store's group commit: how many writes, and how many bytes of them (request
/// bodies, results), one SQLite transaction takes at most, and for how long (microseconds) it
/// keeps taking writes once begun.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSection {
    pub group_max_writes: usize,
    pub group_max_bytes: usize,
    pub group_max_time_us: u64,
    /// The database writer thread's nice value (0: inherited); see
    /// `prism_embedded::WriterConfig::thread_nice`.
    pub writer_nice: i32,
    /// The WAL's length in frames past which the writer finishes a checkpoint so that the WAL
    /// starts over; see `prism_embedded::WriterConfig::wal_restart_frames`.
    pub wal_restart_frames: u32,
}

impl Default for StorageSection {
    fn default() -> Self {
        Self {
            group_max_writes: 1024,
            group_max_bytes: 16 * 1024 * 1024,
            group_max_time_us: 2_000,
            writer_nice: 0,
            wal_restart_frames: 2048,
        }
    }
}

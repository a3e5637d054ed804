//! Once a second: prism's resident memory (from /proc), and the size of its data directory and
//! of the SQLite write-ahead log in it, for the "RSS flat, WAL and data bounded" checks.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    pub second: u64,
    /// 0 while prism is down (between a kill and its restart).
    pub rss_kb: u64,
    pub data_bytes: u64,
    pub wal_bytes: u64,
}

pub struct Sampler {
    samples: Arc<Mutex<Vec<Sample>>>,
    done: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    pub fn start(pid: Arc<AtomicU32>, data: PathBuf, started: Instant) -> Self {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let task = {
            let (samples, done) = (Arc::clone(&samples), Arc::clone(&done));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                while !done.load(Ordering::SeqCst) {
                    tick.tick().await;
                    let (data_bytes, wal_bytes) = dir_sizes(&data);
                    let sample = Sample {
                        second: started.elapsed().as_secs(),
                        rss_kb: rss_kb(pid.load(Ordering::SeqCst)),
                        data_bytes,
                        wal_bytes,
                    };
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(sample);
                }
            })
        };
        Self {
            samples,
            done,
            task,
        }
    }

    pub async fn finish(self) -> Vec<Sample> {
        self.done.store(true, Ordering::SeqCst);
        let _ = self.task.await;
        std::mem::take(&mut *self.samples.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

fn rss_kb(pid: u32) -> u64 {
    if pid == 0 {
        return 0;
    }
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Bytes under `dir` in all, and in files named `*-wal`.
fn dir_sizes(dir: &Path) -> (u64, u64) {
    let (mut all, mut wal) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                all += meta.len();
                if entry.file_name().to_string_lossy().ends_with("-wal") {
                    wal += meta.len();
                }
            }
        }
    }
    (all, wal)
}

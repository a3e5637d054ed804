//! Replays, on stable, every input the fuzz targets keep: the minimised corpora
//! (`fuzz/corpus/<target>/`), the inputs that once broke a target (`fuzz/regressions/<target>/`)
//! and the dependency panics a target screens out (`fuzz/known-issues/<target>/`).
//! Each must pass its target's properties, so a fixed crash stays fixed in the ordinary test run.
#![allow(
    clippy::unwrap_used,
    reason = "test helpers sit outside #[test] functions, where clippy.toml's allowances do not reach"
)]

use std::path::{Path, PathBuf};

use prism_fuzz_surfaces::TARGETS;

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
}

fn replay(kind: &str, at_least: usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(kind);
    for (name, target) in TARGETS {
        let paths = inputs(&root.join(name));
        assert!(
            paths.len() >= at_least,
            "{kind}/{name} holds {} inputs",
            paths.len()
        );
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            eprintln!("{}", path.display());
            target(&data);
        }
    }
}

#[test]
fn every_corpus_input_keeps_its_targets_properties() {
    replay("corpus", 1);
}

#[test]
fn every_input_that_once_broke_a_target_now_passes() {
    replay("regressions", 0);
}

/// Inputs that panic inside a dependency pass because the target screens them out; this keeps
/// the screens covering every one found.
#[test]
fn every_known_dependency_panic_stays_screened_out() {
    replay("known-issues", 0);
}

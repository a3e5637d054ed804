#!/usr/bin/env bash
# Frees the disk held by target/debug's linked executables (test binaries, the workspace's bins,
# and the incremental caches) once the suites have run, keeping the libraries, build scripts and
# proc-macros a later `cargo clippy` or `cargo build` reuses. Prints what it freed.
set -euo pipefail
cd "$(dirname "$0")/.."

debug=target/debug
[ -d "$debug" ] || exit 0
before=$(du -sm "$debug" | cut -f1)
# Test and bin executables have no extension; proc-macros (.so), rlibs and rmetas do.
find "$debug/deps" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -delete
# The bins' copies at the top of target/debug are hard links to the same files.
find "$debug" -maxdepth 1 -type f -perm -u+x ! -name '*.*' -delete
rm -rf "$debug/incremental"
after=$(du -sm "$debug" | cut -f1)
echo "target/debug: ${before} MB -> ${after} MB"

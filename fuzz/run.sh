#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 30), one after another, on one core, from its
# committed corpus plus the seeds, with the product's caps; fails if any target crashed, passed
# the RSS limit or timed out. Installs the nightly toolchain and cargo-fuzz when missing, so CI on
# a fresh machine can call it. New corpus entries land in fuzz/corpus/<target>; after a long run,
# minimise them with `fuzz/run.sh --cmin` before committing.
#   fuzz/run.sh [SECONDS] [TARGET...]
#   fuzz/run.sh --cmin [TARGET...]
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

TARGETS=(batch_planner chat_request scheduled_request multipart_upload lambda_events recurring_schedule)
# 6 MiB: the HTTP body cap (HttpLimits::max_body_bytes) and Lambda's invocation payload cap.
MAX_LEN=$((6 * 1024 * 1024))
# The sanitizer is off: the code under test forbids `unsafe`, and without ASan a run does twice
# the executions. libFuzzer's coverage and its RSS and time limits still apply.
FUZZ=(cargo +nightly fuzz)
BUILD_FLAGS=(--sanitizer none)

if ! rustup toolchain list | grep -q '^nightly'; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
python3 seeds/make.py

if [[ "${1:-}" == "--cmin" ]]; then
    shift
    (($#)) && TARGETS=("$@")
    for target in "${TARGETS[@]}"; do
        # Set cover over edges (no hit counts): every covered edge kept, the corpus a tenth
        # the size of a plain cmin's.
        "${FUZZ[@]}" cmin "${BUILD_FLAGS[@]}" "$target" "corpus/$target" -- -max_len=$MAX_LEN \
            -rss_limit_mb=1024 -timeout=5 -set_cover_merge=1 -use_counters=0
    done
    exit 0
fi

seconds="${1:-30}"
shift || true
(($#)) && TARGETS=("$@")
"${FUZZ[@]}" build "${BUILD_FLAGS[@]}"
failed=()
# One process, one thread per target (no -jobs: that forks a worker whose log is a file).
for target in "${TARGETS[@]}"; do
    mkdir -p "corpus/$target"
    echo "== $target: ${seconds}s"
    nice -n 19 "${FUZZ[@]}" run "${BUILD_FLAGS[@]}" "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -max_len=$MAX_LEN \
        -rss_limit_mb=1024 -timeout=5 -print_final_stats=1 || failed+=("$target")
done
if ((${#failed[@]})); then
    echo "fuzz targets that failed: ${failed[*]} (their inputs are in fuzz/artifacts/)" >&2
    exit 1
fi

#!/usr/bin/env bash
# The finalizer's benchmark (issue 13), not CI: bench/finalize.py against `prism serve --backend
# aws` on the emulator (moto through scripts/moto_server.py, started here with MOTO_LOG_CALLS=1
# so the calls of each phase can be counted). Per size in LINES (default "10000 40000") of
# LINE_BYTES bytes (default 1000): a batch on the zero-latency mock, prism's RSS sampled through
# the lines and through finalizing, the emulator's calls of each phase, the output checked
# (every custom_id once, in order). Raw JSON lines in $BENCH_OUT/results.jsonl.
# Knobs: LINES LINE_BYTES LEASE (the batches' lease, e.g. "10s"; default the config's)
# PROFILE (debug|release, default debug) SKIP_BUILD=1, BIN_DIR, BENCH_OUT, INPUT_DIR.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-debug}"
OUT="${BENCH_OUT:-$ROOT/bench/out/finalize}"
export BIN="${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    flag=$([[ "$PROFILE" == release ]] && echo --release || true)
    cargo build $flag -p prism-server -p prism-testkit -p prism-aws --bin prism --bin prism-mock-upstream --bin prism-provision
fi
mkdir -p "$OUT"
# shellcheck source=scripts/emulator.sh
source scripts/emulator.sh
export MOTO_LOG_CALLS=1
start_emulator "$OUT/moto.log"
export MOTO_LOG="$OUT/moto.log" INPUT_DIR="${INPUT_DIR:-$OUT}"
.venv/bin/python bench/finalize.py | tee "$OUT/results.jsonl"

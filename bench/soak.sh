#!/usr/bin/env bash
# The soak test (issue 11): JOBS (10,000) async jobs from CLIENTS (200) concurrent clients plus a
# LINES (50,000) line batch against `mock-slow-LATENCY_MS` (200 ms), with KILLS (2) SIGKILLs of
# `prism serve` (embedded) at random moments, run by `prism-chaos` under `nice`. Zero lost and
# exactly once (prism-chaos's checks), prism's RSS and the data directory and WAL sampled every
# second. Raw output in bench/out/soak/ (report.json, samples.csv, chaos.txt, prism.log); the
# markdown summary, with RSS / data / WAL over time, in bench/out/soak/summary.md.
#
# Knobs: JOBS CLIENTS LINES KILLS KILL_WINDOW_S LATENCY_MS WORKER_CONCURRENCY MODEL_CONCURRENCY
# UPSTREAM_TIMEOUT_S (60: the soak is about kills and memory; prism-chaos's 2 s, made for the
# fault matrix's hangs, times out 200 ms calls on a starved debug build and repeats them)
# EVERY_S (table row spacing), PROFILE (release), SKIP_BUILD=1. prism.log holds prism's own log
# (jobs at debug: claims, upstream calls, outcome writes).
# A long soak: SUBMIT_RATE paces the async jobs (jobs per second in all; 0, the default, sends
# them as fast as the clients go), so JOBS / SUBMIT_RATE seconds of steady load; IDLE_TAIL_S
# keeps sampling prism that long after the work ended, to see RSS settle once idle.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/bench/out/soak}"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
JOBS="${JOBS:-10000}"
CLIENTS="${CLIENTS:-200}"
LINES="${LINES:-50000}"
KILLS="${KILLS:-2}"
KILL_WINDOW_S="${KILL_WINDOW_S:-60}"
LATENCY_MS="${LATENCY_MS:-200}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-64}"
MODEL_CONCURRENCY="${MODEL_CONCURRENCY:-500}"
UPSTREAM_TIMEOUT_S="${UPSTREAM_TIMEOUT_S:-60}"
EVERY_S="${EVERY_S:-10}"
SUBMIT_RATE="${SUBMIT_RATE:-0}"
IDLE_TAIL_S="${IDLE_TAIL_S:-0}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

start_chaos_run soak

log "$JOBS jobs from $CLIENTS clients + $LINES lines on mock-slow-$LATENCY_MS, $KILLS kills"
start_s=$(date +%s)
nice "$BIN/prism-chaos" --prism "$BIN/prism" --mock "$MOCK_URL" --model "mock-slow-$LATENCY_MS" \
    --jobs "$JOBS" --clients "$CLIENTS" --scheduled 0 --lines "$LINES" --kills "$KILLS" \
    --kill-window-s "$KILL_WINDOW_S" --worker-concurrency "$WORKER_CONCURRENCY" \
    --model-concurrency "$MODEL_CONCURRENCY" --upstream-timeout-s "$UPSTREAM_TIMEOUT_S" \
    --submit-rate "$SUBMIT_RATE" --idle-tail-s "$IDLE_TAIL_S" \
    --max-wait-s 1800 --out "$OUT" \
    >"$OUT/chaos.txt" 2>"$OUT/chaos.log"
rc=$?
wall=$(($(date +%s) - start_s))
log "exit $rc after $wall s"
{
    echo "Command: \`bench/soak.sh\` (JOBS=$JOBS CLIENTS=$CLIENTS LINES=$LINES KILLS=$KILLS KILL_WINDOW_S=$KILL_WINDOW_S LATENCY_MS=$LATENCY_MS UPSTREAM_TIMEOUT_S=$UPSTREAM_TIMEOUT_S SUBMIT_RATE=$SUBMIT_RATE IDLE_TAIL_S=$IDLE_TAIL_S PROFILE=$PROFILE), wall $wall s, exit $rc"
    echo
    sed 's/^/    /' "$OUT/chaos.txt"
    echo
    jq -r '"Peak RSS \((.peak_rss_kb // 0) / 1024 | floor) MB; peak data dir \((.peak_data_bytes // 0) / 1048576 | floor) MB; peak WAL \((.peak_wal_bytes // 0) / 1048576 | floor) MB; kills at \(.kills | map(.at_s | floor | tostring + " s") | join(", ")); work ended at \(.wall_s | floor) s, then \(.idle_tail_s // 0) s idle"' "$OUT/report.json"
    echo
    echo "| second | RSS MB | data dir MB | WAL MB |"
    echo "|---|---|---|---|"
    awk -F, -v every="$EVERY_S" 'NR > 1 && ($1 % every == 0) { printf "| %d | %.0f | %.1f | %.1f |\n", $1, $2 / 1024, $3 / 1048576, $4 / 1048576 }' "$OUT/samples.csv"
} >"$OUT/summary.md"
cat "$OUT/summary.md"
exit "$rc"

#!/usr/bin/env bash
# Prism benchmark suite, one run, everything on loopback:
#   1. sync chat completions straight to the mock upstream, open loop at 1,000 req/s
#   2. the same through Prism; the difference is the latency Prism adds
#   3. async submits through Prism at 500 req/s (the workers process them meanwhile)
#   4. async end to end: 20,000 jobs against the zero-latency mock, submit then wait for all
# then Prism's peak RSS. Raw outputs land in bench/out/ (gitignored); the markdown summary is
# printed and written to bench/out/summary.md. Results and targets: BENCHMARKS.md.
#
# Knobs (environment): SYNC_RATE SUBMIT_RATE DURATION WARMUP E2E_JOBS E2E_CONCURRENCY E2E_POLL
# LOADGEN_THREADS SKIP_BUILD=1 (use the binaries already in target/release) METRICS=0 (no
# `[metrics]` listener; by default it is on and scraped into out/metrics.txt at the end)
# PROFILE=release|debug (debug only to check the script itself: its numbers mean nothing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

SYNC_RATE="${SYNC_RATE:-1000}"
SUBMIT_RATE="${SUBMIT_RATE:-500}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
E2E_JOBS="${E2E_JOBS:-20000}"
E2E_CONCURRENCY="${E2E_CONCURRENCY:-128}"
E2E_POLL="${E2E_POLL:-list}"
LOADGEN_THREADS="${LOADGEN_THREADS:-1}"
METRICS="${METRICS:-1}"
MODEL="mock"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

build_bins -p prism-server -p prism-testkit -p prism-bench
require_bins prism prism-mock-upstream prism-loadgen

bench_start bench
find "$OUT" -maxdepth 1 -type f -delete

# ---------------------------------------------------------------- environment
{
    describe_machine
    describe_load
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

# ---------------------------------------------------------------- mock upstream
start_mock

# ---------------------------------------------------------------- prism
DATA="$WORK/data"
KEY="$(create_key "$DATA")"
# The end-to-end step lists its tenant's jobs, so it gets a tenant of its own.
E2E_KEY="$(create_key "$DATA" bench-e2e)"
{
    mock_provider_toml
    printf '\n[workers]\nconcurrency = 256\n'
} >"$WORK/prism.toml"
if [[ "$METRICS" != 0 ]]; then
    METRICS_PORT="$(free_port)"
    printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$METRICS_PORT" >>"$WORK/prism.toml"
fi
cp "$WORK/prism.toml" "$OUT/prism.toml"

serve_prism "$OUT/prism" "$DATA" "$WORK/prism.toml"
log "prism on $PRISM_URL (pid $PRISM_PID), data in $DATA"
sample_top

# ---------------------------------------------------------------- steps
FAILED=()
CPU_LINES=()
loadgen() { "$BIN/prism-loadgen" --threads "$LOADGEN_THREADS" --json "$@"; }

# step NAME ARGS...: runs the load generator, JSON to out/NAME.json, human lines to out/NAME.txt;
# records the CPU seconds Prism, the mock and the generator used meanwhile, what else was busy on
# the machine, and Prism's CPU per thread (out/threads-NAME.md).
step() {
    local name="$1"
    shift
    log "$name: prism-loadgen $*"
    local p0 m0 d0 t0 p1 m1 d1 t1 wall loadgen_cpu
    thread_ticks "$PRISM_PID" >"$WORK/threads-$name-0"
    p0="$(cpu_ticks "$PRISM_PID")"
    m0="$(cpu_ticks "$MOCK_PID")"
    d0="$(day_seconds)"
    t0="$(date +%s.%N)"
    # `time` reports the generator's own CPU (user + system seconds) into a file of its own.
    if ! { TIMEFORMAT='%U %S' && time loadgen "$@" >"$OUT/$name.json" 2>"$OUT/$name.txt"; } 2>"$WORK/time-$name"; then
        FAILED+=("$name")
        log "$name: the load generator reported failures"
    fi
    p1="$(cpu_ticks "$PRISM_PID")"
    m1="$(cpu_ticks "$MOCK_PID")"
    d1="$(day_seconds)"
    t1="$(date +%s.%N)"
    thread_ticks "$PRISM_PID" >"$WORK/threads-$name-1"
    cat "$OUT/$name.txt" >&2
    wall="$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')"
    loadgen_cpu="$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time-$name")"
    CPU_LINES+=("| $name | $wall | $(cpu_seconds "$p0" "$p1") | $(cpu_seconds "$m0" "$m1") | $loadgen_cpu | $(interference "$d0" "$d1" "$PRISM_PID" prism-loadgen) |")
    {
        echo "| Thread ($name, ${wall} s) | Threads | CPU s | % of one core |"
        echo "|---|---:|---:|---:|"
        thread_rows "$WORK/threads-$name-0" "$WORK/threads-$name-1" "$wall"
    } >"$OUT/threads-$name.md"
}

step sync-direct sync --url "$MOCK_URL" --model "$MODEL" --rate "$SYNC_RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --samples "$OUT/sync-direct.csv"
sleep 1
step sync-prism sync --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --rate "$SYNC_RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --samples "$OUT/sync-prism.csv"
sleep 1
step submit submit --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --rate "$SUBMIT_RATE" \
    --duration "$DURATION" --warmup "$WARMUP" --samples "$OUT/submit.csv"
wait_idle "$KEY"
sleep 1

step e2e e2e --url "$PRISM_URL" --key "$E2E_KEY" --model "$MODEL" --jobs "$E2E_JOBS" \
    --concurrency "$E2E_CONCURRENCY" --poll "$E2E_POLL"

PEAK_RSS_KIB="$(awk '/^VmHWM:/ { print $2 }' "/proc/$PRISM_PID/status")"
RSS_NOW_KIB="$(awk '/^VmRSS:/ { print $2 }' "/proc/$PRISM_PID/status")"
THREADS="$(awk '/^Threads:/ { print $2 }' "/proc/$PRISM_PID/status")"
DB_SIZE="$(du -sh "$DATA" | cut -f1)"
WAL_SIZE="$(du -ch "$DATA"/*-wal 2>/dev/null | awk 'END { print $1 }')"
curl -fsS "$MOCK_URL/_stats" >"$OUT/mock-stats.json" || true
if [[ "$METRICS" != 0 ]]; then
    curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >"$OUT/metrics.txt" ||
        log "warning: could not scrape $METRICS_PORT/metrics"
fi
log "prism peak RSS ${PEAK_RSS_KIB} KiB (now ${RSS_NOW_KIB} KiB, $THREADS threads); data dir $DB_SIZE"

{
    echo "## Prism benchmark, $(sed -n 's/^date: //p' "$OUT/env.txt")"
    echo
    sed 's/^/    /' "$OUT/env.txt"
    echo
    "$BIN/prism-loadgen" report --direct "$OUT/sync-direct.json" --prism "$OUT/sync-prism.json" \
        --submit "$OUT/submit.json" --e2e "$OUT/e2e.json" --peak-rss-kib "$PEAK_RSS_KIB"
    echo
    echo "CPU seconds per step ($(nproc) cores, so $(nproc) CPU-seconds per wall second); \"others\""
    echo "are processes outside the benchmark (compiles, tests) in % of one core, from top every 0.5 s:"
    echo
    echo "| Step | Wall s | Prism CPU s | Mock CPU s | Generator CPU s | Others avg (peak) |"
    echo "|---|---:|---:|---:|---:|---:|"
    printf '%s\n' "${CPU_LINES[@]}"
    echo
    echo "Prism's threads per step (tokio names its workers and its blocking pool alike):"
    for name in sync-prism submit e2e; do
        echo
        cat "$OUT/threads-$name.md"
    done
    echo
    echo "Prism at the end: peak RSS $((PEAK_RSS_KIB / 1024)) MiB, RSS $((RSS_NOW_KIB / 1024)) MiB, $THREADS threads, data dir $DB_SIZE (of which WAL ${WAL_SIZE:-0})."
} >"$OUT/summary.md" || die "could not build the summary (see $OUT/*.txt)"
cat "$OUT/summary.md"

if ((${#FAILED[@]} > 0)); then
    die "steps with failures: ${FAILED[*]}"
fi

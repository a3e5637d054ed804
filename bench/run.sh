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
# `[metrics]` listener; by default it is on and scraped into out/metrics.txt at the end).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release"

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

log() { printf '[run.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p prism-server -p prism-testkit -p prism-bench)
fi
for b in prism prism-mock-upstream prism-loadgen; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing"
done

mkdir -p "$OUT"
find "$OUT" -maxdepth 1 -type f -delete
WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-bench.XXXXXX")"
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- environment
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "data dir filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    # Anything else busy now competes with the run for the same cores.
    echo "busy processes before the run: $(top -b -n 2 -d 1 | awk '/^top -/ { n++ } n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 { printf "%s %s%%  ", $12, $9 }')"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

# ---------------------------------------------------------------- mock upstream
start_mock

# ---------------------------------------------------------------- prism
DATA="$WORK/data"
KEY="$("$BIN/prism" keys create --tenant bench --data-dir "$DATA")"
# The end-to-end step lists its tenant's jobs, so it gets a tenant of its own.
E2E_KEY="$("$BIN/prism" keys create --tenant bench-e2e --data-dir "$DATA")"
cat >"$WORK/prism.toml" <<EOF
[[providers]]
name = "mock"
base_url = "$MOCK_URL/v1"
models = ["*"]

[workers]
concurrency = 256
EOF
if [[ "$METRICS" != 0 ]]; then
    METRICS_PORT="$("$BIN/prism-loadgen" free-port)"
    printf '\n[metrics]\nlisten = "127.0.0.1:%s"\n' "$METRICS_PORT" >>"$WORK/prism.toml"
fi
cp "$WORK/prism.toml" "$OUT/prism.toml"

PRISM_PORT="$("$BIN/prism-loadgen" free-port)"
PRISM_URL="http://127.0.0.1:$PRISM_PORT"
PRISM_LOG=warn "$BIN/prism" serve --listen "127.0.0.1:$PRISM_PORT" --data-dir "$DATA" \
    --config "$WORK/prism.toml" >"$OUT/prism.stdout" 2>"$OUT/prism.log" &
PRISM_PID=$!
PIDS+=("$PRISM_PID")
for _ in $(seq 100); do
    curl -fsS "$PRISM_URL/health" >/dev/null 2>&1 && break
    kill -0 "$PRISM_PID" 2>/dev/null || die "prism exited; see $OUT/prism.log"
    sleep 0.1
done
curl -fsS "$PRISM_URL/health" >/dev/null || die "prism did not become healthy on $PRISM_URL"
log "prism on $PRISM_URL (pid $PRISM_PID), data in $DATA"
# The whole machine every half second (busy processes only), for the "others" column.
top -b -w 200 -d 0.5 2>/dev/null |
    awk '/^top -/ || ($1 ~ /^[0-9]+$/ && $9 > 0) { print; fflush() }' >"$OUT/top-run.txt" &
PIDS+=($!)

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

# Waits until tenant KEY has nothing pending or running (the submit step's jobs drain).
wait_idle() {
    local key="$1" status
    for _ in $(seq 600); do
        local busy=0
        for status in pending running; do
            curl -fsS -H "Authorization: Bearer $key" "$PRISM_URL/v1/async?status=$status&limit=1" |
                grep -q '"data":\[\]' || busy=1
        done
        [[ "$busy" == 0 ]] && return 0
        sleep 0.1
    done
    log "warning: jobs still unfinished after 60 s"
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

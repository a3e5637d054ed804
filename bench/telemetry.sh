#!/usr/bin/env bash
# What metrics cost on the sync path (issue 18), side by side in one run: two `prism serve`
# processes from the same release binary, the same config and the same mock upstream, one
# without `[metrics]` (no recorder installed: every metric call is a no-op) and one with
# `[metrics] listen` (the Prometheus recorder, scraped once a second as a Prometheus server
# would). Trace export is off in both (no `[traces]`), which is what "tracing with the
# exporter off" means: the spans exist, nothing is exported, and no trace context is computed.
#
# The sync step of bench/run.sh (open loop, SYNC_RATE req/s for DURATION) runs ROUNDS times
# against each, alternating off/on, so a busy machine's drift falls on both alike. Per round:
# p50/p99 latency (from the scheduled send, and from the actual send) and Prism's CPU per
# request. The summary prints the medians and the difference; raw outputs in
# bench/out/telemetry/.
#
# Knobs (environment): SYNC_RATE DURATION WARMUP ROUNDS SKIP_BUILD=1 PROFILE=release|debug
# (debug only to check the script itself: its numbers mean nothing).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out/telemetry"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"

SYNC_RATE="${SYNC_RATE:-1000}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
ROUNDS="${ROUNDS:-3}"
MODEL="mock"

log() { printf '[telemetry.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building $PROFILE binaries"
    flag=()
    [[ "$PROFILE" == release ]] && flag=(--release)
    (cd "$ROOT" && cargo build "${flag[@]}" -p prism-server -p prism-testkit -p prism-bench)
fi
for b in prism prism-mock-upstream prism-loadgen; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing"
done

mkdir -p "$OUT"
find "$OUT" -maxdepth 1 -type f -delete
WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-telemetry.XXXXXX")"
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

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "profile: $PROFILE"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

start_mock

# start_prism NAME EXTRA_TOML: a prism on its own data dir; sets PORT_<NAME> and PID_<NAME>.
start_prism() {
    local name="$1" extra="$2" data="$WORK/data-$1" port key
    key="$("$BIN/prism" keys create --tenant bench --data-dir "$data")"
    echo "$key" >"$WORK/key-$name"
    cat >"$WORK/prism-$name.toml" <<EOF
[[providers]]
name = "mock"
base_url = "$MOCK_URL/v1"
models = ["*"]

[workers]
concurrency = 256

$extra
EOF
    cp "$WORK/prism-$name.toml" "$OUT/prism-$name.toml"
    port="$("$BIN/prism-loadgen" free-port)"
    PRISM_LOG=warn "$BIN/prism" serve --listen "127.0.0.1:$port" --data-dir "$data" \
        --config "$WORK/prism-$name.toml" >"$OUT/prism-$name.stdout" 2>"$OUT/prism-$name.log" &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || die "prism ($name) exited; see $OUT/prism-$name.log"
        sleep 0.1
    done
    printf -v "PORT_$name" '%s' "$port"
    printf -v "PID_$name" '%s' "$pid"
    log "prism ($name) on 127.0.0.1:$port (pid $pid)"
}

METRICS_PORT="$("$BIN/prism-loadgen" free-port)"
start_prism off ""
start_prism on "[metrics]
listen = \"127.0.0.1:$METRICS_PORT\""

# A scraper, as a Prometheus server would poll: once a second for the whole run.
(while sleep 1; do curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >/dev/null 2>&1 || true; done) &
PIDS+=($!)

echo "round,variant,p50_ms,p99_ms,service_p50_ms,service_p99_ms,ok,errors,dropped,prism_cpu_s,cpu_us_per_req,others" >"$OUT/rounds.csv"
for round in $(seq "$ROUNDS"); do
    for variant in off on; do
        port_var="PORT_$variant"
        pid_var="PID_$variant"
        port="${!port_var}"
        pid="${!pid_var}"
        name="r$round-$variant"
        log "$name: sync at $SYNC_RATE req/s for $DURATION"
        c0="$(cpu_ticks "$pid")"
        "$BIN/prism-loadgen" --json sync --url "http://127.0.0.1:$port" --key "$(cat "$WORK/key-$variant")" \
            --model "$MODEL" --rate "$SYNC_RATE" --duration "$DURATION" --warmup "$WARMUP" \
            >"$OUT/$name.json" 2>"$OUT/$name.txt" || log "$name: the load generator reported failures"
        c1="$(cpu_ticks "$pid")"
        load="$(cut -d' ' -f1 /proc/loadavg)"
        python3 - "$OUT/$name.json" "$round" "$variant" "$(cpu_seconds "$c0" "$c1")" "$load" >>"$OUT/rounds.csv" <<'EOF'
import json, sys
path, round_, variant, cpu, load = sys.argv[1:]
s = json.load(open(path))
# CPU over the warm-up and the measured period alike: both sent at the same rate.
sent = s["ok"] + s["errors"] + s["target_rate"] * s["warmup_s"]
print(f'{round_},{variant},{s["latency_ms"]["p50"]:.3f},{s["latency_ms"]["p99"]:.3f},'
      f'{s["service_ms"]["p50"]:.3f},{s["service_ms"]["p99"]:.3f},{s["ok"]},{s["errors"]},'
      f'{s["dropped"]},{cpu},{float(cpu) * 1e6 / max(sent, 1):.1f},load {load}')
EOF
        tail -1 "$OUT/rounds.csv" >&2
        sleep 1
    done
done

curl -fsS "http://127.0.0.1:$METRICS_PORT/metrics" >"$OUT/metrics.txt" || true

python3 - "$OUT/rounds.csv" "$SYNC_RATE" "$DURATION" <<'EOF' | tee "$OUT/summary.md"
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
cols = [("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("service_p50_ms", "p50 from actual send ms"),
        ("service_p99_ms", "p99 from actual send ms"), ("cpu_us_per_req", "Prism CPU µs per request")]
med = {v: {c: statistics.median(float(r[c]) for r in rows if r["variant"] == v) for c, _ in cols}
       for v in ("off", "on")}
print(f"Sync through Prism at {sys.argv[2]} req/s for {sys.argv[3]}, {len(rows) // 2} rounds each, "
      "alternating; medians of the rounds:")
print()
print("| | metrics off | metrics on | difference |")
print("|---|---:|---:|---:|")
for c, label in cols:
    a, b = med["off"][c], med["on"][c]
    pct = (b - a) / a * 100 if a else float("nan")
    print(f"| {label} | {a:.3f} | {b:.3f} | {b - a:+.3f} ({pct:+.1f}%) |")
print()
print("Every round:")
print()
print("| Round | Variant | p50 ms | p99 ms | p50 actual ms | p99 actual ms | OK | Errors | Dropped | Prism CPU s | CPU µs/req | Load |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for r in rows:
    print(f'| {r["round"]} | {r["variant"]} | {r["p50_ms"]} | {r["p99_ms"]} | {r["service_p50_ms"]} | '
          f'{r["service_p99_ms"]} | {r["ok"]} | {r["errors"]} | {r["dropped"]} | {r["prism_cpu_s"]} | '
          f'{r["cpu_us_per_req"]} | {r["others"]} |')
EOF
log "metrics of the 'on' process after the run: $OUT/metrics.txt ($(grep -c '^prism_' "$OUT/metrics.txt" || true) samples)"

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

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

build_bins -p prism-server -p prism-testkit -p prism-bench
require_bins prism prism-mock-upstream prism-loadgen

bench_start telemetry
find "$OUT" -maxdepth 1 -type f -delete

{
    describe_machine
    echo "profile: $PROFILE"
    describe_load
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

start_mock

# start_prism NAME EXTRA_TOML: a prism on its own data dir; sets PORT_<NAME> and PID_<NAME>.
start_prism() {
    local name="$1" extra="$2" data="$WORK/data-$1"
    create_key "$data" >"$WORK/key-$name"
    {
        mock_provider_toml
        printf '\n[workers]\nconcurrency = 256\n\n%s\n' "$extra"
    } >"$WORK/prism-$name.toml"
    cp "$WORK/prism-$name.toml" "$OUT/prism-$name.toml"
    serve_prism "$OUT/prism-$name" "$data" "$WORK/prism-$name.toml"
    PIDS+=("$PRISM_PID")
    printf -v "PORT_$name" '%s' "$PRISM_PORT"
    printf -v "PID_$name" '%s' "$PRISM_PID"
    log "prism ($name) on 127.0.0.1:$PRISM_PORT (pid $PRISM_PID)"
}

METRICS_PORT="$(free_port)"
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

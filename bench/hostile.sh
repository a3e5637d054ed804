#!/usr/bin/env bash
# Peak memory of `prism serve` (default configuration, embedded backend) under hostile clients,
# each phase in a fresh process and data directory, everything on loopback:
#   1. slow:   SLOW_CONNECTIONS (500) connections sending a request head one byte a second;
#              `http.header_read_timeout` (10 s) must close every one of them.
#   2. bodies: BODY_REQUESTS (200) concurrent POST /v1/chat/completions with BODY_BYTES (~6 MB)
#              bodies sent over BODY_SEND_S seconds each; `http.max_inflight_body_bytes` (192 MiB)
#              bounds what is buffered, the rest are answered 503 with retry-after.
#   3. lists:  FILES (1000) files uploaded with 255-byte filenames (the cap), a refused upload with
#              a 4 MB filename, then LIST_CALLS (200) GET /v1/files, LIST_CONCURRENCY (50) at a time.
# For each: prism's RSS at start and its peak (VmHWM), and what the clients saw. Target: peak RSS
# under 300 MB. Raw outputs land in bench/out/hostile/ (gitignored); the markdown summary is
# printed and written to bench/out/hostile/summary.md. Results: BENCHMARKS.md ("Hostile clients").
#
# Knobs (environment): PROFILE (release; `debug` uses target/debug and skips the LTO build),
# SKIP_BUILD=1, SLOW_CONNECTIONS SLOW_HOLD_S BODY_REQUESTS BODY_BYTES BODY_SEND_S FILES
# LIST_CALLS LIST_CONCURRENCY.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out/hostile"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
SLOW_CONNECTIONS="${SLOW_CONNECTIONS:-500}"
SLOW_HOLD_S="${SLOW_HOLD_S:-20}"
BODY_REQUESTS="${BODY_REQUESTS:-200}"
BODY_BYTES="${BODY_BYTES:-6000000}"
BODY_SEND_S="${BODY_SEND_S:-5}"
FILES="${FILES:-1000}"
LIST_CALLS="${LIST_CALLS:-200}"
LIST_CONCURRENCY="${LIST_CONCURRENCY:-50}"
CLIENT="$ROOT/bench/hostile_client.py"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
status_mib() { awk -v k="$2:" '$1 == k { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

build_bins -p prism-server --bin prism
require_bins prism
ulimit -n 8192 2>/dev/null || true
rm -rf "$OUT" && mkdir -p "$OUT"
bench_start hostile

stop_prism() {
    stop ${PRISM_PID:+"$PRISM_PID"}
    PRISM_PID=""
}

# start_prism NAME: a fresh prism with no config file (the defaults); sets PRISM_PID, PORT, KEY.
start_prism() {
    local dir="$OUT/$1"
    mkdir -p "$dir"
    KEY="$(create_key "$dir/data")"
    serve_prism "$dir/prism" "$dir/data"
    PORT="$PRISM_PORT"
    START_RSS="$(status_mib "$PRISM_PID" VmRSS)"
}

ROWS=()
# finish_phase NAME RESULT: records prism's peak RSS with what the clients saw.
finish_phase() {
    local peak
    peak="$(status_mib "$PRISM_PID" VmHWM)"
    kill -0 "$PRISM_PID" 2>/dev/null || die "prism died during $1"
    log "$1: start ${START_RSS} MiB, peak ${peak} MiB: $2"
    ROWS+=("| $1 | $START_RSS MiB | **$peak MiB** | \`$2\` |")
    stop_prism
}

log "phase 1: $SLOW_CONNECTIONS slow connections"
start_prism slow
result="$(python3 "$CLIENT" slow 127.0.0.1 "$PORT" "$SLOW_CONNECTIONS" "$SLOW_HOLD_S")"
finish_phase "$SLOW_CONNECTIONS slow connections (one byte/s)" "$result"

log "phase 2: $BODY_REQUESTS concurrent bodies of $BODY_BYTES bytes"
start_prism bodies
result="$(python3 "$CLIENT" bodies 127.0.0.1 "$PORT" "$KEY" "$BODY_REQUESTS" "$BODY_BYTES" "$BODY_SEND_S")"
finish_phase "$BODY_REQUESTS concurrent ~6 MB bodies" "$result"

log "phase 3: $FILES uploads with 255-byte filenames, then $LIST_CALLS list calls"
start_prism lists
name="$(printf 'f%.0s' $(seq 249)).jsonl"
line='{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}]}}'
printf '%s\n' "$line" >"$OUT/lists/input.jsonl"
seq "$FILES" | xargs -P 8 -I{} curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v1/files" \
    -H "Authorization: Bearer $KEY" -F purpose=batch -F "file=@$OUT/lists/input.jsonl;filename=$name"
refused="$(python3 "$CLIENT" hugename 127.0.0.1 "$PORT" "$KEY" 4194304)"
result="$(python3 "$CLIENT" lists 127.0.0.1 "$PORT" "$KEY" "$LIST_CALLS" "$LIST_CONCURRENCY")"
finish_phase "$LIST_CALLS lists of $FILES files" "$refused $result"

{
    echo "| Phase | RSS at start | Peak RSS (VmHWM) | What the clients saw |"
    echo "|---|---|---|---|"
    printf '%s\n' "${ROWS[@]}"
} | tee "$OUT/summary.md"

#!/usr/bin/env bash
# The fault matrix under load (issue 11): async jobs from concurrent clients, scheduled jobs and
# one batch run together against `mock-chaos-LATENCY_MS-SEED` (per call: 20% 429 with
# `retry-after: 1`, 10% 500, 5% hangs past the 2 s attempt timeout, 2% truncated bodies) while
# `prism-chaos` SIGKILLs and restarts `prism serve` KILLS times at random moments. Per mode:
#   embedded   `prism serve` on SQLite
#   aws        `prism serve --backend aws` on the moto emulator
#   aws-proxy  the same, with `prism-fault-proxy` between prism and moto (DynamoDB throttling,
#              SQS 500/503, S3 503 SlowDown, connection resets before and after forwarding)
# Checks (prism-chaos, shared/testkit/src/chaos.rs): every job and line ends exactly once, with
# its own answer or a code the faults explain; upstream calls ≤ attempts + kills × in flight.
# Raw output in bench/out/faults/<mode>/ (report.json, samples.csv, prism.log, chaos.txt); the
# summary in bench/out/faults/summary.md. Exits non-zero if any check failed.
#
# Knobs: MODES ("embedded aws aws-proxy"), JOBS CLIENTS SCHEDULED LINES KILLS KILL_WINDOW_S
# LATENCY_MS SEED MAX_WAIT_S, PROFILE (release), SKIP_BUILD=1; MOTO_RAW=1 runs plain
# moto_server instead of scripts/moto_server.py (see bench/moto_races.py).
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/bench/out/faults}"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
MODES="${MODES:-embedded aws aws-proxy}"
JOBS="${JOBS:-2000}"
CLIENTS="${CLIENTS:-50}"
SCHEDULED="${SCHEDULED:-200}"
LINES="${LINES:-5000}"
KILLS="${KILLS:-4}"
KILL_WINDOW_S="${KILL_WINDOW_S:-40}"
LATENCY_MS="${LATENCY_MS:-50}"
SEED="${SEED:-7}"
MAX_WAIT_S="${MAX_WAIT_S:-900}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

start_chaos_run faults

if [[ "$MODES" == *aws* ]]; then
    cd "$ROOT"
    source scripts/emulator.sh
    start_emulator "$OUT/moto.log"
    trap 'chaos_cleanup; kill "$moto_pid" 2>/dev/null || true' EXIT
    log "moto on $AWS_ENDPOINT_URL"
fi

failed=0
summary="$OUT/summary.md"
{
    echo "| mode | jobs / clients | scheduled | lines | kills | wall s | async ok / failed | batch ok / failed | job calls (ok) | batch calls (ok, 429) | peak RSS MB | proxy injected | checks |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$summary"
for mode in $MODES; do
    dir="$OUT/$mode"
    mkdir -p "$dir"
    backend=embedded endpoint=() proxy_pid=""
    if [[ "$mode" == aws* ]]; then backend=aws; fi
    if [[ "$mode" == aws-proxy ]]; then
        "$BIN/prism-fault-proxy" --upstream "$AWS_ENDPOINT_URL" --seed "$SEED" >"$dir/proxy.out" 2>"$dir/proxy.log" &
        proxy_pid=$!
        PIDS+=("$proxy_pid")
        for _ in $(seq 50); do grep -q '^listening on' "$dir/proxy.out" && break; sleep 0.1; done
        endpoint=(--aws-endpoint "http://$(sed -n 's/^listening on //p' "$dir/proxy.out")")
        log "fault proxy ${endpoint[1]}"
    fi
    log "mode $mode: $JOBS jobs from $CLIENTS clients, $SCHEDULED scheduled, $LINES lines, $KILLS kills"
    start_s=$(date +%s)
    nice "$BIN/prism-chaos" --prism "$BIN/prism" --mock "$MOCK_URL" --backend "$backend" "${endpoint[@]}" \
        --model "mock-chaos-$LATENCY_MS-$SEED" --jobs "$JOBS" --clients "$CLIENTS" \
        --scheduled "$SCHEDULED" --lines "$LINES" --kills "$KILLS" --kill-window-s "$KILL_WINDOW_S" \
        --seed "$SEED" --max-wait-s "$MAX_WAIT_S" --out "$dir" >"$dir/chaos.txt" 2>"$dir/chaos.log"
    rc=$?
    [[ $rc == 0 ]] || failed=1
    injected="-"
    if [[ -n "$proxy_pid" ]]; then
        stop "$proxy_pid"
        injected="$(tail -1 "$dir/proxy.out" | jq -c 'to_entries | map({(.key): (.value | del(.forwarded))}) | add')"
    fi
    log "mode $mode: exit $rc after $(($(date +%s) - start_s)) s"
    cat "$dir/chaos.txt" >&2
    [[ -f "$dir/report.json" ]] || { echo "| $mode | no report (exit $rc) |" >>"$summary"; continue; }
    jq -r --arg mode "$mode" --arg injected "$injected" '
        def n(k): (.verdict.outcomes | to_entries | map(select(.key | startswith(k))) | map(.value) | add) // 0;
        "| \($mode) | \(.jobs) / \(.clients) | \(.scheduled) | \(.lines) | \(.kills | length) | \(.wall_s | floor) | "
        + "\(n("async completed")) / \(n("async failed")) | \(n("batch completed")) / \(n("batch failed")) | "
        + "\(.calls.async.requests + .calls.scheduled.requests) (\(.calls.async.ok + .calls.scheduled.ok)) | "
        + "\(.calls.batch.requests) (\(.calls.batch.ok), \(.calls.batch.rate_limited)) | "
        + "\((.peak_rss_kb // 0) / 1024 | floor) | \($injected) | "
        + "\(.verdict.checks | map(select(.pass)) | length)/\(.verdict.checks | length) pass"
        + (if (.verdict.checks | map(select(.pass | not)) | length) > 0
           then "; FAIL: " + (.verdict.checks | map(select(.pass | not) | .name + " (" + .detail + ")") | join("; "))
           else "" end) + " |"' "$dir/report.json" >>"$summary"
done
cat "$summary"
exit "$failed"

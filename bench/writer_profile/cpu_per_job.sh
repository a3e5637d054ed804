#!/usr/bin/env bash
# Issue 12: what one end-to-end async job costs each process. Starts the mock and prism (fresh data
# directory), runs WARM jobs end to end unmeasured, then E2E jobs, and prints the jobs/s with the
# utime + stime per job of prism, the mock and the load generator. PERF=1 also records prism with
# `perf record --call-graph dwarf` for PERF_SECS during the measured run (a binary built with
# `cargo rustc --release -p prism-server --bin prism -- -C strip=none` has the symbols).
#   cpu_per_job.sh PRISM_BIN OUTDIR      (BIN_DIR: prism-mock-upstream and prism-loadgen)
set -uo pipefail
PRISM="$1"; OUT="$2"; E2E="${E2E:-20000}"; WARM="${WARM:-5000}"
B="${BIN_DIR:-$(dirname "$0")/bin}"
mkdir -p "$OUT"; rm -rf "${OUT:?}"/*; DATA="$OUT/data"
# shellcheck source=bench/lib.sh
source "$(dirname "$0")/../lib.sh" # cpu_ticks, TICKS_PER_S
"$B/prism-mock-upstream" --listen 127.0.0.1:0 >"$OUT/mock.stdout" 2>"$OUT/mock.log" & MOCK=$!
sleep 0.3; MOCK_URL="http://$(sed -n 's/^listening on //p' "$OUT/mock.stdout" | head -1)"
KEY="$("$PRISM" keys create --tenant bench-e2e --data-dir "$DATA")"
printf '[[providers]]\nname = "mock"\nbase_url = "%s/v1"\nmodels = ["*"]\n\n[workers]\nconcurrency = 256\n%s\n' "$MOCK_URL" "${EXTRA:-}" >"$OUT/prism.toml"
PORT="$("$B/prism-loadgen" free-port)"; URL="http://127.0.0.1:$PORT"
PRISM_LOG="${LEVEL:-warn}" "$PRISM" serve --listen "127.0.0.1:$PORT" --data-dir "$DATA" --config "$OUT/prism.toml" >"$OUT/prism.stdout" 2>"$OUT/prism.log" & PID=$!
for _ in $(seq 100); do curl -fsS "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
"$B/prism-loadgen" --json e2e --url "$URL" --key "$KEY" --jobs "$WARM" --concurrency 128 >/dev/null 2>&1
TR=""
if [[ "${PERF:-0}" == 1 ]]; then
  perf record -F 797 --call-graph dwarf,16384 -p "$PID" -o "$OUT/perf.data" -- sleep "${PERF_SECS:-3}" >/dev/null 2>&1 & TR=$!
fi
P0=$(cpu_ticks "$PID"); M0=$(cpu_ticks "$MOCK")
/usr/bin/time -o "$OUT/loadgen.time" -f "%U %S" "$B/prism-loadgen" --json e2e --url "$URL" --key "$KEY" --jobs "$E2E" --concurrency 128 >"$OUT/e2e.json" 2>"$OUT/e2e.txt"
P1=$(cpu_ticks "$PID"); M1=$(cpu_ticks "$MOCK")
[[ -n "$TR" ]] && wait "$TR"
per_job() { awk -v t="$1" -v hz="$TICKS_PER_S" -v n="$E2E" 'BEGIN { printf "%.0f", t * 1e6 / hz / n }'; }
LG="$(awk -v n="$E2E" '{ printf "%.0f", ($1 + $2) * 1e6 / n }' "$OUT/loadgen.time")"
echo "e2e $(jq -r '.jobs_per_s | floor' "$OUT/e2e.json") jobs/s; CPU µs per job: prism $(per_job $((P1 - P0))) mock $(per_job $((M1 - M0))) loadgen $LG" | tee "$OUT/info.txt"
kill "$PID" "$MOCK"; wait 2>/dev/null

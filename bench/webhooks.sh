#!/usr/bin/env bash
# Webhook delivery latency on the embedded backend: async jobs submitted at RATE/s against the
# zero-latency mock upstream each finish and produce one `async.job.completed` event; a loopback
# receiver records each event's arrival. Latency = arrival at the receiver (request read) minus
# the event's `created_at` in the database, which is the time of the job's terminal write (the
# outbox row is written in that same transaction). Prints p50/p90/p99/max and how many events
# arrived once, twice or never.
#
#   bench/webhooks.sh                  # RATE=200 DURATION=30
#   RATE=200 DURATION=60 bench/webhooks.sh
#   PROFILE=dev bench/webhooks.sh      # debug binaries (no release build at hand)
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

RATE="${RATE:-200}"
DURATION="${DURATION:-30}"
OUT="${OUT:-target/bench-webhooks}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then BIN=target/release; else BIN=target/debug; fi
mkdir -p "$OUT"
WORK="$(mktemp -d)"
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cargo build --profile "$PROFILE" --locked -p prism-server -p prism-bench -p prism-testkit >&2

MOCK_PORT="$("$BIN/prism-loadgen" free-port)"
"$BIN/prism-mock-upstream" --listen "127.0.0.1:$MOCK_PORT" >"$OUT/mock.log" 2>&1 &
PIDS+=($!)
RECEIVER_PORT="$("$BIN/prism-loadgen" free-port)"
: >"$OUT/arrivals.txt"
.venv/bin/python bench/webhooks_receiver.py "$RECEIVER_PORT" "$OUT/arrivals.txt" &
PIDS+=($!)

cat >"$WORK/prism.toml" <<TOML
[[providers]]
name = "mock"
base_url = "http://127.0.0.1:$MOCK_PORT/v1"
models = ["*"]

[workers]
concurrency = 256

[webhooks]
allow_private_targets = true
TOML
DATA="$WORK/data"
KEY="$("$BIN/prism" keys create --tenant bench --data-dir "$DATA")"
PRISM_PORT="$("$BIN/prism-loadgen" free-port)"
PRISM_URL="http://127.0.0.1:$PRISM_PORT"
PRISM_LOG=warn "$BIN/prism" serve --listen "127.0.0.1:$PRISM_PORT" --data-dir "$DATA" \
    --config "$WORK/prism.toml" >"$OUT/prism.stdout" 2>"$OUT/prism.log" &
PIDS+=($!)
for _ in $(seq 100); do
    curl -fsS "$PRISM_URL/health" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS -H "Authorization: Bearer $KEY" -H 'content-type: application/json' \
    -d "{\"url\": \"http://127.0.0.1:$RECEIVER_PORT/hook\", \"events\": [\"async.job.completed\"]}" \
    "$PRISM_URL/v1/webhook_endpoints" >/dev/null

echo "submitting $RATE jobs/s for ${DURATION}s" >&2
"$BIN/prism-loadgen" --json submit --url "$PRISM_URL" --key "$KEY" --model mock-echo \
    --rate "$RATE" --duration "${DURATION}s" --warmup 0s >"$OUT/submit.json" 2>"$OUT/submit.txt"
EXPECTED="$(sqlite3 "$DATA/prism.sqlite3" "SELECT COUNT(*) FROM jobs" 2>/dev/null ||
    .venv/bin/python -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM jobs').fetchone()[0])" "$DATA/prism.sqlite3")"
for _ in $(seq 120); do
    got="$(wc -l <"$OUT/arrivals.txt")"
    [ "$got" -ge "$EXPECTED" ] && break
    sleep 0.5
done
sleep 2

.venv/bin/python - "$DATA/prism.sqlite3" "$OUT/arrivals.txt" "$EXPECTED" <<'PY'
import collections, sqlite3, sys
db, arrivals, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
created = dict(sqlite3.connect(db).execute("SELECT id, created_at FROM webhook_events"))
seen = collections.defaultdict(list)
for line in open(arrivals):
    evt, at = line.split()
    seen[evt].append(float(at))
lat = sorted(min(v) - created[e] for e, v in seen.items() if e in created)
def q(p):
    return lat[min(len(lat) - 1, int(p * len(lat)))]
dups = sum(1 for v in seen.values() if len(v) > 1)
print(f"jobs {expected}, events recorded {len(created)}, delivered {len(seen)}, "
      f"delivered more than once {dups}, never {len(created) - len(seen)}")
print(f"terminal -> receiver latency ms: p50 {q(0.50):.1f}  p90 {q(0.90):.1f}  "
      f"p99 {q(0.99):.1f}  max {lat[-1]:.1f}")
PY

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
ROOT="$PWD"
RATE="${RATE:-200}"
DURATION="${DURATION:-30}"
OUT="${OUT:-target/bench-webhooks}"
PROFILE="${PROFILE:-release}"
if [ "$PROFILE" = release ]; then BIN=target/release; else BIN=target/debug; fi
# shellcheck source=bench/lib.sh
source bench/lib.sh

build_bins --locked -p prism-server -p prism-bench -p prism-testkit >&2
bench_start webhooks
start_mock
RECEIVER_PORT="$(free_port)"
: >"$OUT/arrivals.txt"
.venv/bin/python bench/webhooks_receiver.py "$RECEIVER_PORT" "$OUT/arrivals.txt" &
PIDS+=($!)

{
    mock_provider_toml
    printf '\n[workers]\nconcurrency = 256\n\n[webhooks]\nallow_private_targets = true\n'
} >"$WORK/prism.toml"
DATA="$WORK/data"
KEY="$(create_key "$DATA")"
serve_prism "$OUT/prism" "$DATA" "$WORK/prism.toml"
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

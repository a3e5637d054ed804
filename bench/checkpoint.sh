#!/usr/bin/env bash
# What the batch commit rate costs: the same batch (LINES lines toward `mock-slow-LATENCY_MS`,
# LINES_PER_CHUNK lines per chunk, LINE_CONCURRENCY in flight per chunk) on `prism serve`
# (embedded, release build), once per `checkpoint_every` in EVERY (default "250ms 5s"), each in a
# fresh prism and data directory. Per case: wall time from create to `completed`, the store
# writes the processors made (part commits and lease renewals, counted from prism's debug events
# `chunk part committed` / `chunk lease renewed`: one conditional store write each, plus one blob
# put per part) per chunk per minute, the chunk records' size (SQLite), and the $ per million
# lines those writes would cost on DynamoDB + S3 at list prices (BENCHMARKS.md's cost model:
# $1.25 per million WRU, a transactional write 2 WRU per KB per item; S3 PUT $0.005 and GET
# $0.0004 per 1,000; each part is put once and read once by the finalizer).
# Output: a markdown table on stdout and in bench/out/checkpoint/summary.md.
#
# Knobs (environment): LINES LATENCY_MS LINE_CONCURRENCY LINES_PER_CHUNK EVERY SKIP_BUILD=1
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out/checkpoint"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}" # BIN=target/debug with SKIP_BUILD=1: the case is latency-bound
LINES="${LINES:-2000}"
LATENCY_MS="${LATENCY_MS:-2000}"
LINE_CONCURRENCY="${LINE_CONCURRENCY:-100}"
LINES_PER_CHUNK="${LINES_PER_CHUNK:-1000}"
EVERY="${EVERY:-250ms 5s}"
MODEL="mock-slow-$LATENCY_MS"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

build_bins -p prism-server -p prism-testkit -p prism-bench
bench_start checkpoint-bench
rm -rf "${OUT:?}"/*
start_mock

python3 - "$WORK/input.jsonl" "$LINES" "$MODEL" <<'EOF'
import json, sys
path, lines, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for n in range(lines):
        f.write(json.dumps({"custom_id": f"r-{n}", "method": "POST", "url": "/v1/chat/completions",
                            "body": {"model": model, "messages": [{"role": "user", "content": f"line {n}"}]}}) + "\n")
EOF

echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1); load before: $(cut -d' ' -f1-3 /proc/loadavg)" >"$OUT/env.txt"
: >"$OUT/results.tsv"
for every in $EVERY; do
    dir="$OUT/$every"
    mkdir -p "$dir" "$WORK/data"
    {
        mock_provider_toml
        cat <<EOF

[batches]
line_concurrency = $LINE_CONCURRENCY
lines_per_chunk = $LINES_PER_CHUNK
checkpoint_every = "$every"
EOF
    } >"$dir/prism.toml"
    KEY="$(create_key "$WORK/data")"
    serve_prism "$dir/prism" "$WORK/data" "$dir/prism.toml" warn,prism_core::batches::process=debug
    URL="$PRISM_URL"
    api() { curl -fsS -H "Authorization: Bearer $KEY" "$@"; }
    file_id="$(api -F purpose=batch -F "file=@$WORK/input.jsonl" "$URL/v1/files" | jq -r .id)"
    t0="$(date +%s.%N)"
    batch_id="$(api -H 'content-type: application/json' "$URL/v1/batches" \
        -d "{\"input_file_id\":\"$file_id\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" | jq -r .id)"
    while :; do
        sleep 0.2
        status="$(api "$URL/v1/batches/$batch_id" | jq -r .status)"
        case "$status" in completed | failed | expired | cancelled) break ;; esac
    done
    t1="$(date +%s.%N)"
    api "$URL/v1/batches/$batch_id" >"$dir/batch.json"
    [[ "$status" == completed ]] || die "$every: batch ended $status"
    commits="$(grep -c 'chunk part committed' "$dir/prism.log" || true)"
    renewals="$(grep -c 'chunk lease renewed' "$dir/prism.log" || true)"
    # The chunk records as finalized: parts per chunk and the record's size (what a DynamoDB
    # chunk item would weigh).
    chunk_bytes="$(python3 -c "
import os, sqlite3, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        try:
            rows = sqlite3.connect(os.path.join(root, name)).execute(
                'SELECT length(parts), json_array_length(parts) FROM batch_chunks').fetchall()
        except sqlite3.DatabaseError:
            continue
        print(' '.join(f'{b}:{n}' for b, n in rows))
        sys.exit()" "$WORK/data")"
    stop "$PRISM_PID"
    PRISM_PID=""
    rm -rf "$WORK/data"
    printf '%s\t%s\t%s\t%s\t%s\n' "$every" "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" \
        "$commits" "$renewals" "$chunk_bytes" >>"$OUT/results.tsv"
    log "$every: $status in $(tail -1 "$OUT/results.tsv" | cut -f2) s, $commits commits, $renewals renewals"
done

python3 - "$OUT/results.tsv" "$LINES" "$LINES_PER_CHUNK" <<'EOF' | tee "$OUT/summary.md"
import math, sys
path, lines, per_chunk = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunks = math.ceil(lines / per_chunk)
WRU, PUT, GET = 1.25e-6, 0.005e-3, 0.0004e-3
print("| checkpoint_every | wall s | part commits | lease renewals | writes per chunk per min | blob puts per chunk per min | chunk record at the end | DynamoDB + S3 $ per 1M lines |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for row in open(path):
    every, wall, commits, renewals, sizes = row.rstrip("\n").split("\t")
    wall, commits, renewals = float(wall), int(commits), int(renewals)
    per_part = [int(b) / max(int(n), 1) for b, n in (s.split(":") for s in sizes.split())]
    part_bytes = sum(per_part) / len(per_part)
    final = max(int(s.split(":")[0]) for s in sizes.split())
    # A commit is a TransactWriteItems over the batch item (~1 KB: 2 WRU) and the chunk item,
    # which grows by one part per commit (2 WRU per started KB); a renewal the same two items.
    per_chunk_commits = commits / chunks
    wru = 0.0
    for i in range(1, int(round(per_chunk_commits)) + 1):
        wru += 2 + 2 * math.ceil((300 + i * part_bytes) / 1024)
    wru += (renewals / chunks) * (2 + 2 * math.ceil((300 + per_chunk_commits * part_bytes) / 1024))
    dollars = (wru * WRU + per_chunk_commits * (PUT + GET)) * (1e6 / per_chunk)
    minutes = wall / 60
    print(f"| {every} | {wall:.1f} | {commits} | {renewals} | {(commits + renewals) / chunks / minutes:.1f} "
          f"| {commits / chunks / minutes:.1f} | {final} B ({part_bytes:.0f} B per part) | ${dollars:.3f} |")
EOF
cat "$OUT/env.txt"

#!/usr/bin/env bash
# Issue 14: the same LINES-line batch (50,000) run three ways against the mock upstream, one
# fresh prism (embedded backend) per mode, with the one provider configured `batch = gateway`,
# `native` or `flex`. Per mode: wall time from create to `completed`, prism's CPU seconds over
# that span, its peak RSS (VmHWM), and the requests prism made to the provider (chat calls, and
# Files/Batch API calls, from the mock's /_stats), and the batch's cost as Prism bills it
# (`prism.cost_usd`) from a `[[prices]]` table of gpt-4o-mini's list and batch prices; flex is
# priced at the batch prices (what OpenAI bills flex at where a model offers it; gpt-4o-mini
# itself offers none), so each mode's line shows its own tier's price.
#
# Knobs (environment): LINES MODEL LINES_PER_CHUNK WORKER_CONCURRENCY MODEL_CONCURRENCY MODES
# PROFILE=release|debug SKIP_BUILD=1 POLL_S MAX_WAIT_S. Raw outputs in bench/out/batch_modes/
# (gitignored); the markdown table is printed and written to summary.md there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out/batch_modes"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
LINES="${LINES:-50000}"
MODEL="${MODEL:-gpt-4o-mini}"
LINES_PER_CHUNK="${LINES_PER_CHUNK:-1000}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-64}"
MODEL_CONCURRENCY="${MODEL_CONCURRENCY:-500}"
MODES="${MODES:-gateway native flex}"
POLL_S="${POLL_S:-0.5}"
MAX_WAIT_S="${MAX_WAIT_S:-1800}"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

build_bins -p prism-server -p prism-testkit
require_bins prism prism-mock-upstream
require_tools curl jq python3

bench_start batch-modes
rm -rf "${OUT:?}"/*

{
    describe_machine
    echo "profile: $PROFILE"
    describe_load
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

start_mock

INPUT="$WORK/input.jsonl"
python3 - "$INPUT" "$LINES" "$MODEL" <<'EOF'
import json, sys
path, lines, model = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path, "w") as f:
    for n in range(lines):
        f.write(json.dumps({"custom_id": f"request-{n}", "method": "POST",
                            "url": "/v1/chat/completions",
                            "body": {"model": model, "messages": [
                                {"role": "user", "content": f"line {n}: say something short"}]}},
                           separators=(",", ":")) + "\n")
EOF

echo "| Mode | Lines | Wall s | Prism CPU s | Peak RSS MiB | Chat requests (flex) | Files/Batch API requests | Output lines | Cost USD (tokens) |" >"$OUT/summary.md"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|" >>"$OUT/summary.md"

for mode in $MODES; do
    dir="$OUT/$mode"
    mkdir -p "$dir"
    {
        cat <<EOF
[[prices]]
model = "gpt-4o-mini*"
input = "0.15"
cached_input = "0.075"
output = "0.60"
batch = { input = "0.075", cached_input = "0.0375", output = "0.30" }
flex = { input = "0.075", cached_input = "0.0375", output = "0.30" }

EOF
        mock_provider_toml
        cat <<EOF
batch = "$mode"

[workers]
concurrency = $WORKER_CONCURRENCY

[batches]
model_concurrency = $MODEL_CONCURRENCY
lines_per_chunk = $LINES_PER_CHUNK
EOF
    } >"$dir/prism.toml"
    rm -rf "$WORK/data"
    KEY="$(create_key "$WORK/data")"
    serve_prism "$dir/prism" "$WORK/data" "$dir/prism.toml"
    url="$PRISM_URL"
    api() { curl -fsS -H "Authorization: Bearer $KEY" "$@"; }
    curl -fsS -X POST "$MOCK_URL/_reset" >/dev/null
    file_id="$(api -F purpose=batch -F "file=@$INPUT" "$url/v1/files" | jq -r .id)"
    p0="$(cpu_ticks "$PRISM_PID")"
    t0="$(now)"
    batch_id="$(api -H 'content-type: application/json' "$url/v1/batches" \
        -d "{\"input_file_id\":\"$file_id\",\"endpoint\":\"/v1/chat/completions\",\"completion_window\":\"24h\"}" | jq -r .id)"
    [[ "$batch_id" == batch* ]] || die "$mode: create failed"
    log "$mode: batch $batch_id of $LINES lines on prism pid $PRISM_PID"
    while :; do
        sleep "$POLL_S"
        api -o "$dir/batch.json" "$url/v1/batches/$batch_id"
        status="$(jq -r .status "$dir/batch.json")"
        case "$status" in completed | failed | expired | cancelled) break ;; esac
        if awk -v a="$t0" -v b="$(now)" -v m="$MAX_WAIT_S" 'BEGIN { exit !(b - a > m) }'; then
            log "$mode: still $status after $MAX_WAIT_S s, giving up"
            break
        fi
    done
    wall="$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')"
    cpu="$(cpu_seconds "$p0" "$(cpu_ticks "$PRISM_PID")")"
    hwm="$(status_kib "$PRISM_PID" VmHWM)"
    curl -fsS "$MOCK_URL/_stats" >"$dir/mock-stats.json"
    chat="$(jq '[.requests[]] | add // 0' "$dir/mock-stats.json")"
    flex="$(jq '[(.flex // {})[]] | add // 0' "$dir/mock-stats.json")"
    batch_api="$(jq '[(.batch_api // {})[]] | add // 0' "$dir/mock-stats.json")"
    output_id="$(jq -r '.output_file_id // empty' "$dir/batch.json")"
    output_lines=0
    [[ -n "$output_id" ]] && output_lines="$(api "$url/v1/files/$output_id/content" | wc -l)"
    cost="$(jq -r '.prism.cost_usd // "none"' "$dir/batch.json")"
    tokens="$(jq -r '"\(.usage.input_tokens // 0) in / \(.usage.output_tokens // 0) out"' "$dir/batch.json")"
    log "$mode: cost \$$cost for $tokens tokens"
    log "$mode: $status in $wall s, cpu $cpu s, peak RSS $((hwm / 1024)) MiB, $chat chat ($flex flex), $batch_api files/batches calls"
    echo "| $mode | $LINES | $wall | $cpu | $((hwm / 1024)) | $chat ($flex) | $batch_api | $output_lines | \$$cost ($tokens) |" >>"$OUT/summary.md"
    stop "$PRISM_PID"
    PRISM_PID=""
done
cat "$OUT/summary.md"

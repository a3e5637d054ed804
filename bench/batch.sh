#!/usr/bin/env bash
# Prism Batch API benchmark, everything on loopback, embedded backend (SQLite), release build:
#   1. throughput: a batch of LINES (50,000) lines toward `mock-slow-LATENCY_MS` (200 ms per
#      call) with `[batches] model_concurrency = 500` (line_concurrency 100, 1,000-line chunks,
#      `[workers] concurrency = 64`, so all 50 chunks run at once and the model gate is the
#      limit), THROUGHPUT_RUNS times, each in a fresh prism and data directory.
#      Wall time from create to `completed` (and from the first poll that sees `in_progress`)
#      against the ideal LINES x latency / model_concurrency (20 s; target ≤ 1.1x), the mock's
#      request count (must be LINES exactly), the output file's line count, prism's peak RSS.
#   2. memory flat in file size: batches over ~50 MB and ~200 MB inputs (MEMORY_SIZES_MB, at most
#      MEMORY_LINES lines, long user content) against the zero-latency mock (model `gpt-bench`),
#      each in a fresh prism: prism's peak RSS (VmHWM; target ≤ 150 MB, flat) and the upload time.
#   3. validation throughput of the batch planner: `prism-validate --mb VALIDATE_MB` (MiB/s).
# Per batch it also records prism's CPU (per thread) and what else was busy on the machine.
# Raw outputs land in bench/out/batch/ (gitignored); the markdown summary is printed and written
# to bench/out/batch/summary.md; a lock (bench/out/batch.lock) keeps a second run from starting
# meanwhile. Exits non-zero if a batch did not complete every line exactly once. Results, targets
# and the AWS cost model: BENCHMARKS.md ("Batch API").
#
# ENDPOINT (default /v1/chat/completions; /v1/embeddings, /v1/completions, /v1/moderations or /v1/responses
# write lines of that kind, their content as the `input` or `prompt`) and PROFILE (default
# release; debug runs the dev binaries, for a machine without time for a release build).
# Knobs (environment): LINES LATENCY_MS MODEL_CONCURRENCY LINE_CONCURRENCY LINES_PER_CHUNK
# WORKER_CONCURRENCY CHECKPOINT_EVERY CHECKPOINT_LINES THROUGHPUT_RUNS MEMORY_SIZES_MB MEMORY_LINES VALIDATE_MB POLL_S MAX_WAIT_S
# SKIP_BUILD=1 (use the binaries already in target/release), BENCH_OUT (another output directory
# for side experiments; emptied first). THROUGHPUT_RUNS=0 or MEMORY_SIZES_MB="" skips a part.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/bench/out/batch}"
PROFILE="${PROFILE:-release}"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
ENDPOINT="${ENDPOINT:-/v1/chat/completions}"

LINES="${LINES:-50000}"
LATENCY_MS="${LATENCY_MS:-200}"
MODEL_CONCURRENCY="${MODEL_CONCURRENCY:-500}"
LINE_CONCURRENCY="${LINE_CONCURRENCY:-100}"
LINES_PER_CHUNK="${LINES_PER_CHUNK:-1000}"
WORKER_CONCURRENCY="${WORKER_CONCURRENCY:-64}"
CHECKPOINT_EVERY="${CHECKPOINT_EVERY:-5s}" # prism's own default is 250ms
CHECKPOINT_LINES="${CHECKPOINT_LINES:-500}"
THROUGHPUT_RUNS="${THROUGHPUT_RUNS:-2}"
MEMORY_SIZES_MB="${MEMORY_SIZES_MB-50 200}" # decimal MB; the cap is 200 MiB = 209.7 MB
MEMORY_LINES="${MEMORY_LINES:-50000}"
VALIDATE_MB="${VALIDATE_MB:-200}"
POLL_S="${POLL_S:-0.25}"
MAX_WAIT_S="${MAX_WAIT_S:-900}" # give up on a batch after this long

SLOW_MODEL="mock-slow-$LATENCY_MS"
FAST_MODEL="gpt-bench"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# B - A in seconds, 2 decimals.
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

build_bins -p prism-server -p prism-testkit -p prism-bench
require_bins prism prism-mock-upstream prism-loadgen prism-validate
require_tools curl jq python3 top

mkdir -p "$OUT"
# One run at a time: a second one would share the cores (spoiling both) and wipe this one's files.
exec 9>"$OUT.lock"
flock -n 9 || die "another bench/batch.sh is running (lock $OUT.lock held by pid(s) $(fuser "$OUT.lock" 2>/dev/null))"
rm -rf "${OUT:?}"/*
# PIDS: long-lived children (mock, top); PRISM_PID: the prism of the current case, if any.
bench_start batch-bench
# An interrupted prism would otherwise wait out its shutdown grace for lines in flight.
STOP_WAIT=50  # tenths of a second between SIGTERM and SIGKILL (bench/lib.sh stop)

# ---------------------------------------------------------------- environment
{
    describe_machine
    echo "endpoint: $ENDPOINT; profile: $PROFILE"
    echo "prism binary: $(date -u -r "$BIN/prism" '+%Y-%m-%d %H:%M:%S UTC')"
    describe_load
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

sample_top

# ---------------------------------------------------------------- mock upstream (shared)
start_mock

# ---------------------------------------------------------------- helpers
# gen_input FILE LINES MODEL CONTENT_BYTES: a batch input toward ENDPOINT with distinct
# custom_ids and about CONTENT_BYTES characters of content per line (a user message, a prompt or
# an input).
gen_input() {
    ENDPOINT="$ENDPOINT" python3 - "$@" <<'EOF'
import json, os, sys
path, lines, model, size = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
endpoint = os.environ["ENDPOINT"]
words = "the quick brown fox jumps over the lazy dog and keeps running ".split()
filler, i = [], 0
while sum(len(w) + 1 for w in filler) < size:
    filler.append(words[i % len(words)]); i += 1
filler = " ".join(filler)[:max(0, size)]
with open(path, "w") as f:
    for n in range(lines):
        content = f"line {n}: {filler}"
        if endpoint == "/v1/chat/completions":
            body = {"model": model, "messages": [{"role": "user", "content": content}]}
        elif endpoint == "/v1/completions":
            body = {"model": model, "prompt": content}
        else:
            body = {"model": model, "input": content}
        f.write(json.dumps({"custom_id": f"request-{n}", "method": "POST", "url": endpoint,
                            "body": body}, separators=(",", ":")) + "\n")
EOF
}

# start_prism DIR: a fresh prism on DIR/data with the benchmark config; sets PRISM_PID,
# PRISM_URL and KEY.
start_prism() {
    local dir="$1"
    mkdir -p "$dir"
    {
        mock_provider_toml
        cat <<EOF

[workers]
concurrency = $WORKER_CONCURRENCY

[batches]
model_concurrency = $MODEL_CONCURRENCY
line_concurrency = $LINE_CONCURRENCY
lines_per_chunk = $LINES_PER_CHUNK
checkpoint_lines = $CHECKPOINT_LINES
checkpoint_every = "$CHECKPOINT_EVERY"
EOF
    } >"$dir/prism.toml"
    KEY="$(create_key "$WORK/data")"
    serve_prism "$dir/prism" "$WORK/data" "$dir/prism.toml"
}

stop_prism() {
    stop "$PRISM_PID"
    PRISM_PID=""
    rm -rf "$WORK/data"
}

api() { curl -fsS -H "Authorization: Bearer $KEY" "$@"; }

RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

# run_case NAME INPUT MODEL IDEAL_S: one batch over INPUT in a fresh prism; appends one JSON
# object to results.jsonl and leaves the raw outputs in OUT/NAME/.
run_case() {
    local name="$1" input="$2" model="$3" ideal="$4"
    local dir="$OUT/$name"
    local lines bytes
    lines="$(wc -l <"$input")"
    bytes="$(stat -c %s "$input")"
    start_prism "$dir"
    log "$name: prism on $PRISM_URL (pid $PRISM_PID); $lines lines, $bytes bytes of $model"
    curl -fsS -X POST "$MOCK_URL/_reset" >/dev/null

    local upload_s file_id
    upload_s="$(api -o "$dir/file.json" -w '%{time_total}' -F purpose=batch -F "file=@$input" "$PRISM_URL/v1/files")"
    file_id="$(jq -r .id "$dir/file.json")"
    [[ "$file_id" == file* ]] || die "$name: upload failed: $(cat "$dir/file.json")"
    local upload_hwm
    upload_hwm="$(status_kib "$PRISM_PID" VmHWM)"
    log "$name: uploaded $file_id in ${upload_s} s (prism peak RSS so far $((upload_hwm / 1024)) MiB)"

    local p0 m0 d0 t_create t_ip="" t_done status="" batch_id
    thread_ticks "$PRISM_PID" >"$WORK/threads-0"
    p0="$(cpu_ticks "$PRISM_PID")"
    m0="$(cpu_ticks "$MOCK_PID")"
    d0="$(day_seconds)"
    t_create="$(now)"
    api -H 'content-type: application/json' -o "$dir/created.json" "$PRISM_URL/v1/batches" \
        -d "{\"input_file_id\":\"$file_id\",\"endpoint\":\"$ENDPOINT\",\"completion_window\":\"24h\"}"
    batch_id="$(jq -r .id "$dir/created.json")"
    [[ "$batch_id" == batch* ]] || die "$name: create failed: $(cat "$dir/created.json")"

    # Poll: one CSV row per poll (seconds since create, status, completed, failed).
    echo "t_s,status,completed,failed,rss_kib" >"$dir/polls.csv"
    while :; do
        sleep "$POLL_S"
        api -o "$WORK/batch.json" "$PRISM_URL/v1/batches/$batch_id"
        local t
        t="$(now)"
        status="$(jq -r .status "$WORK/batch.json")"
        [[ -z "$t_ip" && "$status" != validating ]] && t_ip="$t"
        jq -r --arg t "$(elapsed "$t_create" "$t")" --arg rss "$(status_kib "$PRISM_PID" VmRSS)" \
            '[$t, .status, .request_counts.completed, .request_counts.failed, $rss] | @csv' \
            "$WORK/batch.json" >>"$dir/polls.csv"
        case "$status" in completed | failed | expired | cancelled) break ;; esac
        if awk -v a="$t_create" -v b="$t" -v m="$MAX_WAIT_S" 'BEGIN { exit !(b - a > m) }'; then
            log "$name: still $status after $MAX_WAIT_S s, giving up"
            break
        fi
    done
    t_done="$(now)"
    local p1 m1 d1
    p1="$(cpu_ticks "$PRISM_PID")"
    m1="$(cpu_ticks "$MOCK_PID")"
    d1="$(day_seconds)"
    thread_ticks "$PRISM_PID" >"$WORK/threads-1"
    cp "$WORK/batch.json" "$dir/batch.json"
    local wall
    wall="$(elapsed "$t_create" "$t_done")"
    {
        echo "| Thread ($name, create → $status, ${wall} s) | Threads | CPU s | % of one core |"
        echo "|---|---:|---:|---:|"
        thread_rows "$WORK/threads-0" "$WORK/threads-1" "$wall"
    } >"$dir/threads.md"

    # The output file: every line must be there.
    local output_id output_lines=0 output_bytes=0 download_s=0
    output_id="$(jq -r '.output_file_id // empty' "$dir/batch.json")"
    if [[ -n "$output_id" ]]; then
        local t0
        t0="$(now)"
        read -r output_lines output_bytes < <(api "$PRISM_URL/v1/files/$output_id/content" | wc -lc)
        download_s="$(elapsed "$t0" "$(now)")"
    fi
    local error_id
    error_id="$(jq -r '.error_file_id // empty' "$dir/batch.json")"
    if [[ -n "$error_id" ]]; then
        api "$PRISM_URL/v1/files/$error_id/content" >"$dir/errors.jsonl" || true
    fi
    curl -fsS "$MOCK_URL/_stats" >"$dir/mock-stats.json"

    local hwm rss threads
    hwm="$(status_kib "$PRISM_PID" VmHWM)"
    rss="$(status_kib "$PRISM_PID" VmRSS)"
    threads="$(awk '$1 == "Threads:" { print $2 }' "/proc/$PRISM_PID/status")"
    local others
    others="$(interference "$d0" "$d1" "$PRISM_PID")"
    # Part commits: each is a blob under .../chunks/<chunk>/ that stays until the batch is deleted.
    local parts chunks
    parts="$(find "$WORK/data" -path '*/chunks/*' -type f | wc -l)"
    chunks="$(find "$WORK/data" -path '*/chunks/*' -type d | wc -l)"
    stop_prism

    jq -n -c \
        --arg name "$name" --arg model "$model" --arg status "$status" \
        --argjson lines "$lines" --argjson bytes "$bytes" --argjson upload_s "$upload_s" \
        --argjson create_to_done_s "$wall" \
        --argjson in_progress_to_done_s "$(elapsed "${t_ip:-$t_create}" "$t_done")" \
        --argjson ideal_s "$ideal" \
        --argjson output_lines "$output_lines" --argjson output_bytes "$output_bytes" \
        --argjson download_s "$download_s" \
        --argjson prism_cpu_s "$(cpu_seconds "$p0" "$p1")" --argjson mock_cpu_s "$(cpu_seconds "$m0" "$m1")" \
        --argjson peak_rss_kib "$hwm" --argjson upload_peak_rss_kib "$upload_hwm" --argjson rss_end_kib "$rss" --argjson threads "$threads" \
        --arg others "$others" --argjson parts "$parts" --argjson chunks "$chunks" \
        --slurpfile batch "$dir/batch.json" --slurpfile mock "$dir/mock-stats.json" \
        '{name: $name, model: $model, status: $status, lines: $lines, bytes: $bytes,
          upload_s: $upload_s, create_to_done_s: $create_to_done_s,
          in_progress_to_done_s: $in_progress_to_done_s, ideal_s: $ideal_s,
          request_counts: $batch[0].request_counts,
          batch_times: ($batch[0] | {created_at, in_progress_at, finalizing_at, completed_at}),
          upstream_requests: ($mock[0].requests[$model] // 0),
          upstream_aborted: ($mock[0].aborted[$model] // 0),
          output_lines: $output_lines, output_bytes: $output_bytes, download_s: $download_s,
          prism_cpu_s: $prism_cpu_s, mock_cpu_s: $mock_cpu_s, peak_rss_kib: $peak_rss_kib,
          upload_peak_rss_kib: $upload_peak_rss_kib,
          rss_end_kib: $rss_end_kib, threads: $threads, others: $others,
          part_commits: $parts, chunks: $chunks}' | tee -a "$RESULTS" >&2
}

FAILED=()
check() { # check NAME CONDITION-DESCRIPTION JQ-FILTER (on the case's result)
    jq -e -s --arg n "$1" "map(select(.name == \$n))[0] | $3" "$RESULTS" >/dev/null || {
        FAILED+=("$1: $2")
        log "$1: FAILED $2"
    }
}

# ---------------------------------------------------------------- 1. throughput
IDEAL_S="$(awk -v n="$LINES" -v ms="$LATENCY_MS" -v c="$MODEL_CONCURRENCY" 'BEGIN { printf "%.2f", n * ms / 1000 / c }')"
((THROUGHPUT_RUNS > 0)) && gen_input "$WORK/throughput.jsonl" "$LINES" "$SLOW_MODEL" 20
for run in $(seq "$THROUGHPUT_RUNS"); do
    run_case "throughput-$run" "$WORK/throughput.jsonl" "$SLOW_MODEL" "$IDEAL_S"
    check "throughput-$run" "every line completed once" \
        ".status == \"completed\" and .request_counts.completed == $LINES and .upstream_requests == $LINES and .output_lines == $LINES"
    sleep 2
done
rm -f "$WORK/throughput.jsonl"

# ---------------------------------------------------------------- 2. memory vs file size
for mb in $MEMORY_SIZES_MB; do
    # ~ MB x 10^6 bytes over MEMORY_LINES lines; ~150 bytes of each line are JSON around the content.
    content=$((mb * 1000000 / MEMORY_LINES - 150))
    gen_input "$WORK/memory.jsonl" "$MEMORY_LINES" "$FAST_MODEL" "$content"
    run_case "memory-${mb}mb" "$WORK/memory.jsonl" "$FAST_MODEL" 0
    check "memory-${mb}mb" "every line completed once" \
        ".status == \"completed\" and .request_counts.completed == $MEMORY_LINES and .upstream_requests == $MEMORY_LINES and .output_lines == $MEMORY_LINES"
    rm -f "$WORK/memory.jsonl"
    sleep 2
done

# ---------------------------------------------------------------- 3. validation throughput
log "validation: prism-validate --mb $VALIDATE_MB"
d0="$(day_seconds)"
"$BIN/prism-validate" --mb "$VALIDATE_MB" | tee "$OUT/validate.txt" >&2
VALIDATE_OTHERS="$(interference "$d0" "$(day_seconds)" 0 prism-validate)"
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

# ---------------------------------------------------------------- summary
{
    echo "## Batch API benchmark, $(sed -n 's/^date: //p' "$OUT/env.txt")"
    echo
    sed 's/^/    /' "$OUT/env.txt"
    echo
    echo "Throughput: $LINES lines to \`$ENDPOINT\` of \`$SLOW_MODEL\`, model_concurrency $MODEL_CONCURRENCY," \
        "line_concurrency $LINE_CONCURRENCY, $LINES_PER_CHUNK-line chunks, $WORKER_CONCURRENCY workers;" \
        "checkpoint_every $CHECKPOINT_EVERY, checkpoint_lines $CHECKPOINT_LINES;" \
        "ideal $IDEAL_S s, target ≤ 1.1× ideal. Times from the client, polling every $POLL_S s."
    echo
    echo "| Run | Status | Create → completed | In progress → completed | × ideal | Upstream requests | Output lines | Prism CPU s | Peak RSS | Part commits (per chunk) | Others avg (peak) |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
    jq -r -s 'map(select(.name | startswith("throughput")))[] |
        "| \(.name) | \(.status) | \(.create_to_done_s) s (\(.lines / .create_to_done_s | round) lines/s) | \(.in_progress_to_done_s) s | \(.create_to_done_s / .ideal_s * 1000 | round / 1000) | \(.upstream_requests) | \(.output_lines) | \(.prism_cpu_s) | \(.peak_rss_kib / 1024 | round) MiB | \(.part_commits) (\(if .chunks > 0 then .part_commits / .chunks * 10 | round / 10 else 0 end)) | \(.others) |"' "$RESULTS"
    echo
    echo "Memory: \`$ENDPOINT\` lines, zero-latency mock (\`$FAST_MODEL\`), fresh prism per size; target peak RSS ≤ 150 MB, flat in file size."
    echo
    echo "| Input | Lines | Upload | Create → completed | Output | Prism CPU s | Peak RSS after upload | Peak RSS (VmHWM) | Others avg (peak) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
    jq -r -s 'map(select(.name | startswith("memory")))[] |
        "| \(.bytes / 1000000 | round) MB | \(.lines) | \(.upload_s * 100 | round / 100) s (\(.bytes / 1048576 / .upload_s | round) MiB/s) | \(.create_to_done_s) s (\(.lines / .create_to_done_s | round) lines/s) | \(.output_lines) lines, \(.output_bytes / 1000000 | round) MB | \(.prism_cpu_s) | \(.upload_peak_rss_kib / 1024 | round) MiB | \(.peak_rss_kib / 1024 | round) MiB | \(.others) |"' "$RESULTS"
    echo
    echo "Validation (\`prism-validate --mb $VALIDATE_MB\`, one thread): $(cat "$OUT/validate.txt"); others $VALIDATE_OTHERS."
    echo
    echo "Prism's threads per batch (create → terminal status):"
    for name in $(jq -r .name "$RESULTS"); do
        echo
        cat "$OUT/$name/threads.md"
    done
} >"$OUT/summary.md"
cat "$OUT/summary.md"

if ((${#FAILED[@]} > 0)); then
    die "failed checks: ${FAILED[*]}"
fi

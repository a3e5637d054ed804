#!/usr/bin/env bash
# Issue 12, the embedded write path under load, BEFORE and AFTER side by side in one invocation:
#   BEFORE = prism built from git at BEFORE_REF (default: main's HEAD) in a directory of its own,
#   AFTER  = prism built from this worktree.
# Each of REPEATS rounds runs both revisions (order alternating), each on a fresh data directory:
#   1. sync at SYNC_RATE straight to the mock, then through prism (added latency);
#   2. for each rate in RATES: async submits (open loop) while the workers run the jobs, with
#      `GET /v1/async/{id}` of one job at GET_RATE alongside (reads during the write burst);
#   3. async end to end: E2E_JOBS jobs by E2E_CONCURRENCY clients, submit to last completion,
#      with prism's CPU time (utime + stime) per job over that run;
#   4. closed-loop sync (CLOSED_CONCURRENCY clients for CLOSED_DURATION), straight to the mock
#      and then through prism: prism's throughput at saturation as a share of the mock's.
# Then, AFTER only, the group-size curve: for each bound in GROUP_BOUNDS ([storage]
# group_max_writes), submits at CURVE_RATE and an end-to-end run of CURVE_E2E_JOBS.
# Every round gets its own verdicts (targets of issue 12), printed per round; the machine
# (`lscpu` model name, nproc) and the load average before each prism run are recorded. AFTER runs
# with its writer timings on (PRISM_LOG prism_embedded::writer=debug): slow groups (≥ 2 ms from
# the oldest write's queueing to its commit) with where their time went, and checkpoints.
#
# Knobs (environment): REPEATS RATES GET_RATE SYNC_RATE DURATION WARMUP E2E_JOBS E2E_CONCURRENCY
# CLOSED_CONCURRENCY CLOSED_DURATION
# GROUP_BOUNDS CURVE_RATE CURVE_E2E_JOBS BEFORE_REF SKIP_BUILD=1 (reuse bench/out/gc/bin)
# SKIP_CURVE=1 WRITER_LOG=0 PROFILE=debug (a quick check of the script itself, not a measurement).
# Output: bench/out/gc/ (summary.md and raw JSON per run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/bench/out/gc"
BINS="$OUT/bin"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

REPEATS="${REPEATS:-5}"
RATES="${RATES:-500 1000 2000}"
GET_RATE="${GET_RATE:-200}"
SYNC_RATE="${SYNC_RATE:-5000}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
E2E_JOBS="${E2E_JOBS:-20000}"
E2E_CONCURRENCY="${E2E_CONCURRENCY:-128}"
CLOSED_CONCURRENCY="${CLOSED_CONCURRENCY:-32}"
CLOSED_DURATION="${CLOSED_DURATION:-5s}"
GROUP_BOUNDS="${GROUP_BOUNDS:-1 4 16 64 256 1024}"
CURVE_RATE="${CURVE_RATE:-2000}"
CURVE_E2E_JOBS="${CURVE_E2E_JOBS:-10000}"
BEFORE_REF="${BEFORE_REF:-main}"
WRITER_LOG="${WRITER_LOG:-1}"
PROFILE="${PROFILE:-release}"
PROFILE_FLAG=()
[[ "$PROFILE" == release ]] && PROFILE_FLAG=(--release)
MODEL="mock"

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

mkdir -p "$OUT" "$BINS"
bench_start gc

# ---------------------------------------------------------------- builds
BEFORE_SHA="$(git -C "$ROOT" rev-parse --short "$BEFORE_REF")"
AFTER_SHA="$(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo '+dirty')"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building AFTER ($AFTER_SHA) from $ROOT"
    (cd "$ROOT" && cargo build "${PROFILE_FLAG[@]}" -p prism-server -p prism-testkit -p prism-bench \
        --bin prism --bin prism-mock-upstream --bin prism-loadgen) || die "AFTER build failed"
    mkdir -p "$BINS/after"
    cp "$TARGET/$PROFILE/prism" "$TARGET/$PROFILE/prism-mock-upstream" \
        "$TARGET/$PROFILE/prism-loadgen" "$BINS/after/"
    if [[ ! -x "$BINS/before-$BEFORE_SHA/prism" || "$PROFILE" != "$(cat "$BINS/before-$BEFORE_SHA/profile" 2>/dev/null)" ]]; then
        # Built from a clean export of the ref in a directory of its own; the target directory is
        # shared so the third-party crates compile once (the workspace crates' paths differ, so
        # cargo keeps both builds apart), and the binary is copied out at once.
        log "building BEFORE ($BEFORE_REF = $BEFORE_SHA) from a git export"
        rm -rf "$WORK/before-src" && mkdir -p "$WORK/before-src"
        git -C "$ROOT" archive "$BEFORE_SHA" | tar -x -C "$WORK/before-src"
        (cd "$WORK/before-src" && CARGO_TARGET_DIR="$TARGET" cargo build "${PROFILE_FLAG[@]}" \
            -p prism-server --bin prism) || die "BEFORE build failed"
        mkdir -p "$BINS/before-$BEFORE_SHA"
        cp "$TARGET/$PROFILE/prism" "$BINS/before-$BEFORE_SHA/prism"
        echo "$PROFILE" >"$BINS/before-$BEFORE_SHA/profile"
        # The shared target now holds BEFORE's prism; put AFTER's back.
        cp "$BINS/after/prism" "$TARGET/$PROFILE/prism"
    fi
fi
BIN="$BINS/after" # the mock and the generator: AFTER's for both revisions
for b in "$BINS/after/prism" "$BINS/after/prism-mock-upstream" "$BINS/after/prism-loadgen" \
    "$BINS/before-$BEFORE_SHA/prism"; do
    [[ -x "$b" ]] || die "$b is missing (run without SKIP_BUILD=1)"
done
prism_of() { if [[ "$1" == before ]]; then echo "$BINS/before-$BEFORE_SHA/prism"; else echo "$BINS/after/prism"; fi; }

CPU_MODEL="$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "cpu: $CPU_MODEL, nproc $(nproc)"
    echo "kernel: $(uname -sr)"
    echo "data dir filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
    echo "BEFORE: $BEFORE_REF = $BEFORE_SHA; AFTER: $AFTER_SHA; profile $PROFILE"
    echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "knobs: REPEATS=$REPEATS RATES='$RATES' GET_RATE=$GET_RATE SYNC_RATE=$SYNC_RATE DURATION=$DURATION WARMUP=$WARMUP E2E_JOBS=$E2E_JOBS CLOSED_CONCURRENCY=$CLOSED_CONCURRENCY CLOSED_DURATION=$CLOSED_DURATION GROUP_BOUNDS='$GROUP_BOUNDS' CURVE_RATE=$CURVE_RATE"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

start_mock
sample_top

loadgen() { "$BIN/prism-loadgen" --threads 1 --json "$@"; }
jqr() { jq -r "$1" "$2" 2>/dev/null || echo "n/a"; }

# start_prism REV EXTRA_TOML: a fresh data directory; sets PRISM_PID, PRISM_URL, KEY, E2E_KEY.
start_prism() {
    local rev="$1" extra="$2" data level=warn
    PRISM_BIN="$(prism_of "$rev")" # for create_key and serve_prism
    data="$WORK/data-$rev-$RANDOM"
    KEY="$(create_key "$data")"
    E2E_KEY="$(create_key "$data" bench-e2e)"
    {
        mock_provider_toml
        printf '\n[workers]\nconcurrency = 256\n%s\n' "$extra"
    } >"$WORK/prism-$rev.toml"
    [[ "$rev" == after && "$WRITER_LOG" == 1 ]] && level="warn,prism_embedded::writer=debug"
    serve_prism "$RUN_DIR/prism" "$data" "$WORK/prism-$rev.toml" "$level"
    PRISM_DATA="$data"
}
stop_prism() {
    stop "$PRISM_PID"
    rm -rf "$PRISM_DATA"
}
# submit_with_reads NAME RATE: submits at RATE and GETs of one job at GET_RATE, side by side.
submit_with_reads() {
    local name="$1" rate="$2" id
    id="$(curl -fsS -H "Authorization: Bearer $KEY" -H 'x-prism-async: true' \
        -H 'content-type: application/json' \
        -d "{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}" \
        "$PRISM_URL/v1/chat/completions" | jq -r .id)"
    loadgen get --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --job-id "$id" --rate "$GET_RATE" \
        --duration "$DURATION" --warmup "$WARMUP" >"$RUN_DIR/get-$name.json" 2>"$RUN_DIR/get-$name.txt" &
    local get_pid=$!
    loadgen submit --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --rate "$rate" \
        --duration "$DURATION" --warmup "$WARMUP" --samples "$RUN_DIR/submit-$name.csv" \
        >"$RUN_DIR/submit-$name.json" 2>"$RUN_DIR/submit-$name.txt" || log "$name: submit failures"
    wait "$get_pid" || log "$name: get failures"
    wait_idle "$KEY"
}
# The writer's own account of a run (AFTER): slow groups and where their time went.
writer_account() {
    awk '
        /slow group commit/ {
            n++
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "queued_us" && kv[2] > q) q = kv[2]
                if (kv[1] == "begin_us" && kv[2] > b) b = kv[2]
                if (kv[1] == "statements_us" && kv[2] > s) s = kv[2]
                if (kv[1] == "commit_us" && kv[2] > c) c = kv[2]
                if (kv[1] == "writes" && kv[2] > w) w = kv[2]
            }
        }
        /truncating checkpoint/ { t++ }
        /passive checkpoint/ { p++ }
        /writer checkpoint/ {
            k++
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "took_us" && kv[2] > kt) kt = kv[2]
            }
        }
        /writer summary/ {
            for (i = 1; i <= NF; i++) {
                split($i, kv, "=")
                if (kv[1] == "largest_group" && kv[2] > lg) lg = kv[2]
                if (kv[1] == "groups") g += kv[2]
                if (kv[1] == "writes") wr += kv[2]
            }
        }
        END {
            printf "%d slow groups (max queued %.1f ms, lock wait %.1f ms, statements %.1f ms, commit %.1f ms, largest %d writes), %d truncating checkpoints, %d passive checkpoints, %d writer checkpoints (max %.1f ms)",
                n, q / 1000, b / 1000, s / 1000, c / 1000, w, t, p, k, kt / 1000
            if (g > 0) printf ", %.1f writes per group (largest %d, summaries)", wr / g, lg
        }' "$1"
}

verdict() { awk -v v="$1" -v goal="$2" -v dir="$3" 'BEGIN {
    if (v == "n/a" || v == "") { print "n/a"; exit }
    if ((dir == "le" && v + 0 <= goal + 0) || (dir == "ge" && v + 0 >= goal + 0)) print "PASS"; else print "FAIL" }'; }

ROWS=()
VERDICTS=()
ACCOUNTS=()
# one_run REPEAT REV
one_run() {
    local r="$1" rev="$2" load
    RUN_DIR="$OUT/r$r-$rev"
    rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR"
    load="$(cut -d' ' -f1 /proc/loadavg)"
    start_prism "$rev" ""
    log "round $r $rev: prism $PRISM_PID on $PRISM_URL (load $load)"
    loadgen sync --url "$MOCK_URL" --model "$MODEL" --rate "$SYNC_RATE" --duration "$DURATION" \
        --warmup "$WARMUP" >"$RUN_DIR/sync-direct.json" 2>"$RUN_DIR/sync-direct.txt" || true
    loadgen sync --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --rate "$SYNC_RATE" \
        --duration "$DURATION" --warmup "$WARMUP" >"$RUN_DIR/sync-prism.json" 2>"$RUN_DIR/sync-prism.txt" || true
    local rate cells="" submit2000="n/a"
    for rate in $RATES; do
        submit_with_reads "$rate" "$rate"
        local p50 p99 g99
        p50="$(jqr '.latency_ms.p50' "$RUN_DIR/submit-$rate.json")"
        p99="$(jqr '.latency_ms.p99' "$RUN_DIR/submit-$rate.json")"
        g99="$(jqr '.latency_ms.p99' "$RUN_DIR/get-$rate.json")"
        cells+=" $(printf '%.2f / %.2f' "$p50" "$p99" 2>/dev/null || echo "$p50 / $p99") | $(printf '%.2f' "$g99" 2>/dev/null || echo "$g99") |"
        [[ "$rate" == 2000 ]] && submit2000="$p99"
    done
    local ticks_before ticks_after
    ticks_before="$(cpu_ticks "$PRISM_PID")"
    loadgen e2e --url "$PRISM_URL" --key "$E2E_KEY" --model "$MODEL" --jobs "$E2E_JOBS" \
        --concurrency "$E2E_CONCURRENCY" >"$RUN_DIR/e2e.json" 2>"$RUN_DIR/e2e.txt" || log "e2e failures"
    ticks_after="$(cpu_ticks "$PRISM_PID")"
    loadgen closed --url "$MOCK_URL" --model "$MODEL" --concurrency "$CLOSED_CONCURRENCY" \
        --duration "$CLOSED_DURATION" >"$RUN_DIR/closed-direct.json" 2>"$RUN_DIR/closed-direct.txt" || true
    loadgen closed --url "$PRISM_URL" --key "$KEY" --model "$MODEL" --concurrency "$CLOSED_CONCURRENCY" \
        --duration "$CLOSED_DURATION" >"$RUN_DIR/closed-prism.json" 2>"$RUN_DIR/closed-prism.txt" || true
    stop_prism
    local d50 d99 p50 p99 add50 add99 e2e cpu_per_job closed_direct closed_prism share
    # Per job that completed: a failed run divides by what it did, or shows n/a.
    cpu_per_job="$(awk -v t="$((ticks_after - ticks_before))" -v hz="$TICKS_PER_S" \
        -v n="$(jqr '.completed' "$RUN_DIR/e2e.json")" \
        'BEGIN { if (n ~ /^[0-9]+$/ && n > 0) printf "%.0f", t * 1e6 / hz / n; else print "n/a" }')"
    closed_direct="$(jqr '.requests_per_s' "$RUN_DIR/closed-direct.json")"
    closed_prism="$(jqr '.requests_per_s' "$RUN_DIR/closed-prism.json")"
    share="$(awk -v p="$closed_prism" -v d="$closed_direct" 'BEGIN { if (p ~ /^[0-9.]+$/ && d ~ /^[0-9.]+$/ && d > 0) printf "%.0f / %.0f (%.0f%%)", p, d, 100 * p / d; else print "n/a" }')"
    d50="$(jqr '.latency_ms.p50' "$RUN_DIR/sync-direct.json")"
    d99="$(jqr '.latency_ms.p99' "$RUN_DIR/sync-direct.json")"
    p50="$(jqr '.latency_ms.p50' "$RUN_DIR/sync-prism.json")"
    p99="$(jqr '.latency_ms.p99' "$RUN_DIR/sync-prism.json")"
    add50="$(awk -v a="$p50" -v b="$d50" 'BEGIN { printf "%+.3f", a - b }')"
    add99="$(awk -v a="$p99" -v b="$d99" 'BEGIN { printf "%+.3f", a - b }')"
    e2e="$(jqr '.jobs_per_s' "$RUN_DIR/e2e.json")"
    ROWS+=("| $r | $rev | $load | $add50 / $add99 |$cells $(printf '%.0f' "$e2e" 2>/dev/null || echo "$e2e") | $cpu_per_job | $share |")
    VERDICTS+=("| $r | $rev | $(verdict "$submit2000" 2 le) | $(verdict "$e2e" 20000 ge) | $(verdict "$add99" 0.5 le) |")
    if [[ "$rev" == after && "$WRITER_LOG" == 1 ]]; then
        ACCOUNTS+=("- round $r: $(writer_account "$RUN_DIR/prism.log")")
    fi
}

for r in $(seq "$REPEATS"); do
    if ((r % 2 == 1)); then order="before after"; else order="after before"; fi
    for rev in $order; do one_run "$r" "$rev"; done
done

CURVE=()
if [[ "${SKIP_CURVE:-0}" != 1 ]]; then
    for bound in $GROUP_BOUNDS; do
        RUN_DIR="$OUT/curve-$bound"
        rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR"
        start_prism after "$(printf '\n[storage]\ngroup_max_writes = %s\n' "$bound")"
        log "curve: group_max_writes = $bound"
        submit_with_reads "$CURVE_RATE" "$CURVE_RATE"
        loadgen e2e --url "$PRISM_URL" --key "$E2E_KEY" --model "$MODEL" --jobs "$CURVE_E2E_JOBS" \
            --concurrency "$E2E_CONCURRENCY" >"$RUN_DIR/e2e.json" 2>"$RUN_DIR/e2e.txt" || true
        stop_prism
        CURVE+=("| $bound | $(jqr '.latency_ms.p50' "$RUN_DIR/submit-$CURVE_RATE.json") | $(jqr '.latency_ms.p99' "$RUN_DIR/submit-$CURVE_RATE.json") | $(jqr '.latency_ms.p99' "$RUN_DIR/get-$CURVE_RATE.json") | $(printf '%.0f' "$(jqr '.jobs_per_s' "$RUN_DIR/e2e.json")") | $(if [[ "$WRITER_LOG" == 1 ]]; then writer_account "$RUN_DIR/prism.log"; else echo "not logged (WRITER_LOG=0)"; fi) |")
    done
fi

{
    echo "## Group commit, BEFORE ($BEFORE_SHA) vs AFTER ($AFTER_SHA), $(sed -n 's/^date: //p' "$OUT/env.txt")"
    echo
    sed 's/^/    /' "$OUT/env.txt"
    echo
    header="| Round | Rev | Load avg | Sync added p50 / p99 ms ($SYNC_RATE/s) |"
    sep="|---:|---|---:|---:|"
    for rate in $RATES; do
        header+=" Submit $rate/s p50 / p99 ms | GET p99 ms |"
        sep+="---:|---:|"
    done
    echo "$header E2E jobs/s | prism CPU µs per e2e job | Closed-loop sync/s, prism / mock ($CLOSED_CONCURRENCY clients) |"
    echo "$sep---:|---:|---:|"
    printf '%s\n' "${ROWS[@]}"
    echo
    echo "Verdicts per round (targets: submit p99 ≤ 2 ms at 2,000/s, e2e ≥ 20,000 jobs/s, sync added p99 ≤ +0.5 ms):"
    echo
    echo "| Round | Rev | Submit 2,000/s | E2E | Sync added |"
    echo "|---:|---|---|---|---|"
    printf '%s\n' "${VERDICTS[@]}"
    if ((${#ACCOUNTS[@]} > 0)); then
        echo
        echo "AFTER's writer, per round:"
        echo
        printf '%s\n' "${ACCOUNTS[@]}"
    fi
    if ((${#CURVE[@]} > 0)); then
        echo
        echo "Group-size curve (AFTER, submits at $CURVE_RATE/s with reads, then e2e of $CURVE_E2E_JOBS jobs):"
        echo
        echo "| group_max_writes | Submit p50 ms | Submit p99 ms | GET p99 ms | E2E jobs/s | Writer |"
        echo "|---:|---:|---:|---:|---:|---|"
        printf '%s\n' "${CURVE[@]}"
    fi
} >"$OUT/summary.md"
cat "$OUT/summary.md"

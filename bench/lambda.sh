#!/usr/bin/env bash
# Prism's Lambda binaries on the local Lambda stack (cargo-lambda's runtime emulator over the moto
# AWS emulator, `prism-lambda-local`), everything on loopback:
#   1. cold starts: each of the seven functions, from its process start to its first event
#      handled (`prism-lambda-cold-start`: one function alone, all seven at once, init alone
#      against a stub runtime API, the exec floor), for the PROFILE build and, with
#      LAMBDA_ARTIFACTS=1, for the deploy build in target/lambda/<function>/bootstrap (what
#      `sam build` / `cargo lambda build --release` leave there), when present;
#   2. async submits (`x-prism-async: true`, answered 202) to `prism serve --backend aws` and to
#      the local Lambda stack (the api function behind cargo-lambda's function URL, the
#      async-worker fed by the local SQS event source mapping), one after the other against the
#      same moto and the zero-latency mock upstream (`prism-mock-upstream`, model `mock`):
#      first PROBES GET /health and PROBES submits with curl on an idle target (a fresh connection
#      per request, then one kept-alive connection: the hops themselves), then JOBS jobs from one
#      client (sequential) and JOBS from CONCURRENCY clients with the load generator (each
#      waiting until every job is `completed`: the end-to-end time), then an open loop at RATE/s
#      for DURATION. Both targets get their own stack of resources (prefix) on the same emulator.
# Raw outputs land in bench/out/lambda/ (gitignored): the cold-start report, JSON and CSV of every
# sample, the load generator's JSON and text per step, moto's and the functions' logs. The
# markdown summary is printed and written to bench/out/lambda/summary.md. Results: BENCHMARKS.md
# ("Lambda binaries, locally (cargo-lambda)").
#
# Needs the moto emulator and cargo-lambda in .venv (scripts/local-aws.sh installs them from
# tests/requirements.txt). Knobs (environment): PROFILE=debug|release (the build measured, debug
# by default as the local stack runs it), LAMBDA_ARTIFACTS=1, COLD_ALONE COLD_STACK COLD_INIT
# (runs per function, 0 skips that part), JOBS CONCURRENCY RATE DURATION WARMUP_JOBS
# POLL_INTERVAL PROBES, TARGETS ("serve lambda": which targets, in this order), SKIP_COLD=1,
# SKIP_SUBMIT=1, SKIP_BUILD=1, BENCH_OUT (another output directory; emptied first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${BENCH_OUT:-$ROOT/bench/out/lambda}"
PROFILE="${PROFILE:-debug}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/$PROFILE"
MOTO="$ROOT/.venv/bin/moto_server"
CARGO_LAMBDA="${CARGO_LAMBDA:-$ROOT/.venv/bin/cargo-lambda}"

LAMBDA_ARTIFACTS="${LAMBDA_ARTIFACTS:-0}"
COLD_ALONE="${COLD_ALONE:-20}"
COLD_STACK="${COLD_STACK:-10}"
COLD_INIT="${COLD_INIT:-20}"
JOBS="${JOBS:-500}"
CONCURRENCY="${CONCURRENCY:-8}"
# Below what moto sustains end to end (about 10 jobs/s on 2 cores), so the open loop measures a
# steady state rather than a growing backlog.
RATE="${RATE:-5}"
DURATION="${DURATION:-60s}"
WARMUP_JOBS="${WARMUP_JOBS:-40}"
POLL_INTERVAL="${POLL_INTERVAL:-100ms}"
PROBES="${PROBES:-100}"
TARGETS="${TARGETS:-serve lambda}"
MODEL="mock"
FUNCTIONS=(api async-worker reconciler dead-letters batch-planner batch-processor batch-finalizer)

log() { printf '[lambda.sh %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

case "$PROFILE" in
debug) BUILD_FLAGS=() ;;
release) BUILD_FLAGS=(--release) ;;
*) die "PROFILE must be debug or release, not $PROFILE" ;;
esac
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    log "building the $PROFILE binaries"
    packages=(-p prism-server -p prism-testkit -p prism-bench -p prism-aws -p prism-lambda-local)
    for f in "${FUNCTIONS[@]}"; do packages+=(-p "$f"); done
    (cd "$ROOT" && cargo build "${BUILD_FLAGS[@]}" "${packages[@]}")
fi
for b in prism prism-mock-upstream prism-loadgen prism-lambda-cold-start prism-local-aws prism-provision "${FUNCTIONS[@]}"; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing"
done
[[ -x "$MOTO" && -x "$CARGO_LAMBDA" ]] ||
    die "moto and cargo-lambda are needed in .venv: run scripts/local-aws.sh once, or .venv/bin/pip install -r tests/requirements.txt"
for tool in curl jq; do
    command -v "$tool" >/dev/null || die "$tool is required"
done

mkdir -p "$OUT"
# One run at a time: a second one would share the cores (spoiling both) and wipe this one's files.
exec 9>"$OUT.lock"
flock -n 9 || die "another bench/lambda.sh is running (lock $OUT.lock)"
rm -rf "${OUT:?}"/*
WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-lambda-bench.XXXXXX")"
PIDS=()       # long-lived children (moto, mock, the sampler), stopped on exit
TARGET_PID="" # prism serve or prism-local-aws of the current step, if any
STOP_WAIT=100  # tenths of a second between SIGTERM and SIGKILL (bench/lib.sh stop)
cleanup() {
    local rc=$?
    trap - EXIT
    stop ${TARGET_PID:+"$TARGET_PID"} "${PIDS[@]}"
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
# CPU ticks of a process and all its descendants alive now (the local stack's processes).
tree_ticks() {
    local pid="$1" total child
    total="$(cpu_ticks "$pid" 2>/dev/null || echo 0)"
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        total=$((total + $(tree_ticks "$child")))
    done
    echo "$total"
}

# ---------------------------------------------------------------- environment
{
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "profile: $PROFILE ($BIN)"
    echo "moto: $("$ROOT/.venv/bin/python" -c 'import moto; print(moto.__version__)' 2>/dev/null || echo unknown)"
    echo "cargo-lambda: $("$CARGO_LAMBDA" lambda --version 2>/dev/null || echo unknown)"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

# What else used the cores, every 0.5 s: the CPU of every process outside this run's process
# group (this script and everything it starts, the function processes included), from /proc.
# One line per sample: time (epoch s), their CPU in % of one core, the busiest one and its %.
MY_PGID="$(ps -o pgid= -p $$ | tr -d ' ')"
while :; do
    echo "T $(date +%s.%N)"
    cat /proc/[0-9]*/stat 2>/dev/null || true
    sleep 0.5
done | awk -v me="$MY_PGID" -v hz="$TICKS_PER_S" '
    function flush(   pid, d, sum, top, topname) {
        if (started) {
            sum = 0; top = 0; topname = "-"
            for (pid in cur) {
                d = cur[pid] - ((pid in prev) ? prev[pid] : 0)
                sum += d
                if (d > top) { top = d; topname = name[pid] }
            }
            if (now > then) printf "%.3f %.1f %s %.1f\n", now, 100 * sum / hz / (now - then), topname, 100 * top / hz / (now - then)
            fflush()
        }
        delete prev
        for (pid in cur) prev[pid] = cur[pid]
        delete cur
        started = 1
    }
    $1 == "T" { if (now) flush(); then = now; now = $2; next }
    {
        match($0, /\(.*\)/)
        comm = substr($0, RSTART + 1, RLENGTH - 2)
        gsub(/[^A-Za-z0-9_.-]/, "_", comm)
        split(substr($0, RSTART + RLENGTH + 1), f, " ")
        if (f[3] != me) { cur[$1] = f[12] + f[13]; name[$1] = comm }
    }' >"$OUT/others.txt" &
PIDS+=($!)
# others FROM TO (epoch seconds): average and peak CPU of the other processes in between.
others() {
    awk -v from="$1" -v to="$2" '
        $1 >= from && $1 <= to { n++; sum += $2; if ($2 > peak) { peak = $2; who = $3 } }
        END { if (n) printf "%.0f%% (peak %.0f%% %s)", sum / n, peak, who; else printf "n/a" }' "$OUT/others.txt"
}
now() { date +%s.%N; }

# ---------------------------------------------------------------- moto and the mock upstream
MOTO_PORT="$("$BIN/prism-loadgen" free-port)"
"$MOTO" -H 127.0.0.1 -p "$MOTO_PORT" >"$OUT/moto.log" 2>&1 &
MOTO_PID=$!
PIDS+=("$MOTO_PID")
for _ in $(seq 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null && break
    kill -0 "$MOTO_PID" 2>/dev/null || die "moto exited; see $OUT/moto.log"
    sleep 0.1
done
curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" || die "moto did not start on port $MOTO_PORT"
# The emulator, with dummy credentials in a fixed region (as scripts/local-aws.sh).
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true
log "moto on $AWS_ENDPOINT_URL (pid $MOTO_PID)"

start_mock
cat >"$OUT/prism.toml" <<EOF
[[providers]]
name = "mock"
base_url = "http://$MOCK_ADDR/v1"
models = ["*"]
EOF

# ---------------------------------------------------------------- 1. cold starts
COLD_REPORTS=()
# cold LABEL DIR: the seven binaries in DIR (named as the workspace's binaries).
cold() {
    local label="$1" dir="$2" t0
    log "cold starts, $label binaries in $dir"
    t0="$(now)"
    # The template's own configuration: init reads it from SSM and the provider key from
    # Secrets Manager, as a deployed function does.
    (cd "$ROOT" && "$BIN/prism-lambda-cold-start" --prefix "cold-$label-$$" --workspace "$ROOT" \
        --binary-dir "$dir" --cargo-lambda "$CARGO_LAMBDA" --label "$label" \
        --alone "$COLD_ALONE" --stack "$COLD_STACK" --init "$COLD_INIT" \
        --log-dir "$OUT/cold-$label-logs" --samples "$OUT/cold-$label.csv" \
        --json "$OUT/cold-$label.json" >"$OUT/cold-$label.md" 2>"$OUT/cold-$label.log") ||
        die "cold starts of the $label binaries failed; see $OUT/cold-$label.log"
    echo "Other processes on the machine during these runs: $(others "$t0" "$(now)") of one core on average." >>"$OUT/cold-$label.md"
    cat "$OUT/cold-$label.md" >&2
    COLD_REPORTS+=("$OUT/cold-$label.md")
}
if [[ "${SKIP_COLD:-0}" != 1 ]]; then
    cold "$PROFILE" "$BIN"
    if [[ "$LAMBDA_ARTIFACTS" == 1 ]]; then
        mkdir -p "$WORK/deploy-build"
        missing=0
        for f in "${FUNCTIONS[@]}"; do
            if [[ -x "$TARGET_DIR/lambda/$f/bootstrap" ]]; then
                ln -s "$TARGET_DIR/lambda/$f/bootstrap" "$WORK/deploy-build/$f"
            else
                missing=1
            fi
        done
        if [[ "$missing" == 0 ]]; then
            {
                for f in "${FUNCTIONS[@]}"; do
                    echo "$f: $(stat -c '%s bytes, built %y' "$TARGET_DIR/lambda/$f/bootstrap")"
                done
            } >"$OUT/deploy-build.txt"
            cold deploy "$WORK/deploy-build"
        else
            log "LAMBDA_ARTIFACTS=1 but target/lambda/<function>/bootstrap is missing for some; run sam build first"
        fi
    fi
fi

# ---------------------------------------------------------------- 2. submit latency, serve vs lambda
TARGET_URL=""
TARGET_KEY=""
start_serve() {
    local prefix="serve-$$"
    "$BIN/prism-provision" "$prefix" --config "$OUT/prism.toml" >"$WORK/serve.env" ||
        die "prism-provision failed"
    local env=()
    mapfile -t env <"$WORK/serve.env"
    TARGET_KEY="$(env "${env[@]}" "$BIN/prism" keys create --tenant bench --data-dir "$WORK/data")"
    local port
    port="$("$BIN/prism-loadgen" free-port)"
    TARGET_URL="http://127.0.0.1:$port"
    env "${env[@]}" PRISM_LOG=warn "$BIN/prism" serve --listen "127.0.0.1:$port" \
        --data-dir "$WORK/data" --config "$OUT/prism.toml" >"$OUT/serve.stdout" 2>"$OUT/serve.log" &
    TARGET_PID=$!
}
start_lambda() {
    # prism-local-aws's defaults, as scripts/local-aws.sh runs it: 2 processes per function, 4
    # of the api.
    (cd "$ROOT" && exec "$BIN/prism-local-aws" --prefix "fn-$$" --config "$OUT/prism.toml" \
        --port 0 --tenant bench --log-dir "$OUT/lambda-logs" --binary-dir "$BIN" \
        --cargo-lambda "$CARGO_LAMBDA") >"$WORK/local-aws.out" 2>"$OUT/local-aws.log" &
    TARGET_PID=$!
    for _ in $(seq 600); do
        grep -q '^PRISM_API_KEY=' "$WORK/local-aws.out" 2>/dev/null && break
        kill -0 "$TARGET_PID" 2>/dev/null || die "prism-local-aws exited; see $OUT/local-aws.log"
        sleep 0.1
    done
    TARGET_URL="$(sed -n 's/^PRISM_BASE_URL=//p' "$WORK/local-aws.out" | sed 's#/v1$##')"
    TARGET_KEY="$(sed -n 's/^PRISM_API_KEY=//p' "$WORK/local-aws.out")"
    [[ -n "$TARGET_URL" && -n "$TARGET_KEY" ]] || die "prism-local-aws did not print its URL and key"
}
wait_healthy() {
    for _ in $(seq 300); do
        curl -fsS "$TARGET_URL/health" >/dev/null 2>&1 && return 0
        kill -0 "$TARGET_PID" 2>/dev/null || die "$1 exited"
        sleep 0.1
    done
    die "$1 did not become healthy on $TARGET_URL"
}
# Waits until the tenant has nothing pending or running.
wait_idle() {
    local status
    for _ in $(seq 600); do
        local busy=0
        for status in pending running; do
            curl -fsS -H "Authorization: Bearer $TARGET_KEY" "$TARGET_URL/v1/async?status=$status&limit=1" |
                grep -q '"data":\[\]' || busy=1
        done
        [[ "$busy" == 0 ]] && return 0
        sleep 0.2
    done
    log "warning: jobs still unfinished after 120 s"
}

FAILED=()
STEP_ROWS=()
# step TARGET NAME ARGS...: prism-loadgen ARGS against the target; JSON to out/TARGET-NAME.json,
# text to out/TARGET-NAME.txt; the CPU moto and the target (with its children) used meanwhile.
step() {
    local target="$1" name="$2"
    shift 2
    log "$target $name: prism-loadgen $*"
    local m0 t0 w0 m1 t1 w1
    m0="$(cpu_ticks "$MOTO_PID")"
    t0="$(tree_ticks "$TARGET_PID")"
    w0="$(now)"
    if ! "$BIN/prism-loadgen" --json "$@" --url "$TARGET_URL" --key "$TARGET_KEY" --model "$MODEL" \
        >"$OUT/$target-$name.json" 2>"$OUT/$target-$name.txt"; then
        FAILED+=("$target-$name")
        log "$target $name: the load generator reported failures"
    fi
    m1="$(cpu_ticks "$MOTO_PID")"
    t1="$(tree_ticks "$TARGET_PID")"
    w1="$(now)"
    cat "$OUT/$target-$name.txt" >&2
    STEP_ROWS+=("| $target | $name | $(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.1f", b - a }') | $(cpu_seconds "$m0" "$m1") | $(cpu_seconds "$t0" "$t1") | $(others "$w0" "$w1") |")
}

# probe TARGET NAME MODE CURL-ARGS...: PROBES sequential requests with curl, one time_total
# (ms) per line into out/TARGET-probe-NAME-MODE.txt. MODE fresh: a new connection (and curl)
# per request; keepalive: one curl, every request on one kept-alive connection.
probe() {
    local target="$1" name="$2" mode="$3"
    shift 3
    local file="$OUT/$target-probe-$name-$mode.txt" args=() i
    : >"$file"
    if [[ "$mode" == fresh ]]; then
        for ((i = 0; i < PROBES; i++)); do
            curl -sS -o /dev/null -w '%{time_total}\n' "$@" "$TARGET_URL$PROBE_PATH" >>"$WORK/probe.raw"
        done
    else
        for ((i = 0; i < PROBES; i++)); do args+=(-o /dev/null "$TARGET_URL$PROBE_PATH"); done
        curl -sS -w '%{time_total}\n' "$@" "${args[@]}" >>"$WORK/probe.raw"
    fi
    awk '{ printf "%.3f\n", $1 * 1000 }' "$WORK/probe.raw" >"$file"
    rm -f "$WORK/probe.raw"
}
# The local path's hops without the load generator: GET /health (no emulator call) and one async
# submit, each on fresh connections and on one kept-alive connection.
probes() {
    local target="$1" body
    body="{\"model\":\"$MODEL\",\"messages\":[{\"role\":\"user\",\"content\":\"probe\"}]}"
    log "$target: $PROBES GET /health and $PROBES submits with curl, fresh and kept-alive connections"
    for mode in fresh keepalive; do
        PROBE_PATH=/health probe "$target" health "$mode"
        PROBE_PATH=/v1/chat/completions probe "$target" submit "$mode" \
            -H "Authorization: Bearer $TARGET_KEY" -H 'content-type: application/json' \
            -H 'x-prism-async: true' -d "$body"
    done
}

if [[ "${SKIP_SUBMIT:-0}" != 1 ]]; then
    for target in $TARGETS; do
        case "$target" in
        serve) start_serve ;;
        lambda) start_lambda ;;
        *) die "TARGETS: unknown target $target (serve, lambda)" ;;
        esac
        wait_healthy "$target"
        log "$target on $TARGET_URL (pid $TARGET_PID)"
        # Unmeasured: the first requests of every process, connections to moto, key caches.
        step "$target" warmup e2e --jobs "$WARMUP_JOBS" --concurrency 4 --poll-interval "$POLL_INTERVAL"
        # On an idle target first, then under load, each step after the last one's jobs are done.
        probes "$target"
        wait_idle
        step "$target" sequential e2e --jobs "$JOBS" --concurrency 1 --poll-interval "$POLL_INTERVAL"
        step "$target" concurrent e2e --jobs "$JOBS" --concurrency "$CONCURRENCY" --poll-interval "$POLL_INTERVAL"
        step "$target" open-loop submit --rate "$RATE" --duration "$DURATION" --warmup 2s \
            --samples "$OUT/$target-open-loop.csv"
        wait_idle
        stop "$TARGET_PID"
        TARGET_PID=""
        sleep 1
    done
fi
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/env.txt"

# ---------------------------------------------------------------- summary
latency_cells() { # FILE JQ-PATH-TO-LATENCY-SUMMARY
    if [[ -s "$1" ]]; then
        jq -r "$2 | \"\(.p50 * 10 | round / 10) | \(.p90 * 10 | round / 10) | \(.p99 * 10 | round / 10) | \(.max * 10 | round / 10)\"" "$1"
    else
        echo "– | – | – | –"
    fi
}
p50_of() { [[ -s "$1" ]] && jq -r "$2.p50" "$1" || echo ""; }
{
    echo "## Lambda binaries on the local stack, $(sed -n 's/^date: //p' "$OUT/env.txt")"
    echo
    sed 's/^/    /' "$OUT/env.txt"
    for report in "${COLD_REPORTS[@]}"; do
        echo
        cat "$report"
    done
    if [[ "${SKIP_SUBMIT:-0}" != 1 ]]; then
        echo
        echo "Async submit, 202 latency in ms (\`prism serve --backend aws\` vs the api function behind"
        echo "cargo-lambda's function URL; same moto, same mock upstream); $JOBS jobs per closed-loop row:"
        echo
        echo "| Scenario | serve p50 | serve p90 | serve p99 | serve max | Lambda p50 | Lambda p90 | Lambda p99 | Lambda max | Added p50 |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for row in "sequential:one client:.submit_latency_ms" "concurrent:$CONCURRENCY clients:.submit_latency_ms" "open-loop:open loop $RATE/s, $DURATION:.latency_ms"; do
            IFS=: read -r name title path <<<"$row"
            s="$OUT/serve-$name.json"
            l="$OUT/lambda-$name.json"
            added="–"
            if [[ -s "$s" && -s "$l" ]]; then
                added="$(awk -v a="$(p50_of "$s" "$path")" -v b="$(p50_of "$l" "$path")" 'BEGIN { printf "%+.1f", b - a }')"
            fi
            echo "| $title | $(latency_cells "$s" "$path") | $(latency_cells "$l" "$path") | $added |"
        done
        echo
        echo "The same hops with curl, one request at a time ($PROBES each), ms p50 / p90 / max, on a fresh"
        echo "connection per request and on one kept-alive connection:"
        echo
        echo "| Request | serve, fresh | serve, kept alive | Lambda, fresh | Lambda, kept alive |"
        echo "|---|---:|---:|---:|---:|"
        for name in health submit; do
            row="| $([[ $name == health ]] && echo 'GET /health' || echo 'async submit (202)') |"
            for target in serve lambda; do
                for mode in fresh keepalive; do
                    f="$OUT/$target-probe-$name-$mode.txt"
                    if [[ -s "$f" ]]; then
                        row+=" $(sort -n "$f" | awk '{ v[NR] = $1 } END { p = int((NR + 1) / 2); q = int(NR * 0.9 + 0.999); printf "%.1f / %.1f / %.1f", v[p], v[q], v[NR] }') |"
                    else
                        row+=" – |"
                    fi
                done
            done
            echo "$row"
        done
        echo
        echo "End to end ($JOBS jobs each; first submit to the last \`completed\` seen, polling the job list every $POLL_INTERVAL):"
        echo
        echo "| Target | Clients | Submitted in | Last completion after first submit | … after last submit | Jobs/s | Completed |"
        echo "|---|---:|---:|---:|---:|---:|---:|"
        for target in $TARGETS; do
            for name in sequential concurrent; do
                f="$OUT/$target-$name.json"
                [[ -s "$f" ]] || continue
                jq -r --arg t "$target" '"| \($t) | \(.concurrency) | \(.submit_s * 100 | round / 100) s | \(.e2e_s * 100 | round / 100) s | \(.drain_s * 100 | round / 100) s | \(.jobs_per_s * 10 | round / 10) | \(.completed) of \(.jobs) |"' "$f"
            done
        done
        echo
        echo "CPU per step (moto; the target with its child processes: prism, or prism-local-aws with cargo-lambda and the function processes):"
        echo
        echo "| Target | Step | Wall s | moto CPU s | Target CPU s | Others avg (peak) |"
        echo "|---|---|---:|---:|---:|---|"
        printf '%s\n' "${STEP_ROWS[@]}"
    fi
} >"$OUT/summary.md"
cat "$OUT/summary.md"

if ((${#FAILED[@]} > 0)); then
    die "steps with failures: ${FAILED[*]}"
fi

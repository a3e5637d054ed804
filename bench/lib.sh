# Shared by the benchmark scripts (run.sh, batch.sh, batch_modes.sh, checkpoint.sh, telemetry.sh,
# group_commit.sh, hostile.sh, webhooks.sh, lambda.sh, faults.sh, soak.sh): their set-up (log and
# die, the build, the work directory and the exit trap, the mock upstream, a `prism serve` with a
# key, the machine's description), stopping child processes, and process accounting: CPU time
# and per-thread CPU of a process from /proc, and the load other processes put on the machine
# from `top` samples. Sourced, not run; the scripts set ROOT, OUT, BIN (and PROFILE) first.

# log MESSAGE: one line on stderr, tagged with the script's name and the time of day.
log() { printf '[%s %(%H:%M:%S)T] %s\n' "${0##*/}" -1 "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

TICKS_PER_S="$(getconf CLK_TCK)"
# CPU time (user + system) a process has used so far, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Seconds of CPU between two tick counts.
cpu_seconds() { awk -v a="$1" -v b="$2" -v hz="$TICKS_PER_S" 'BEGIN { printf "%.2f", (b - a) / hz }'; }
# Over the top samples in $OUT/top-run.txt taken between two times of day (seconds since
# midnight): the average and peak %CPU (of one core) of processes outside the benchmark, such as
# compiles sharing the machine, and the busiest one's name. `interference FROM TO PID [NAME]`
# leaves out PID (prism), $MOCK_PID, processes named NAME (a load generator) and the scripts'
# own tools. Per-process figures only: in this VM the machine-wide counters of /proc/stat
# disagree with the per-process ones, so no "machine busy" figure.
interference() {
    awk -v from="$1" -v to="$2" -v prism="$3" -v name="${4:-}" -v mock="$MOCK_PID" '
        function flush() {
            if (inside && sampled) {
                k++; other += sum
                if (sum > peak) { peak = sum; peakname = topname }
            }
            sum = 0; topcpu = 0; topname = "-"
        }
        /^top - / {
            flush()
            split($3, t, ":"); now = t[1] * 3600 + t[2] * 60 + t[3]
            inside = (now >= from && now <= to); sampled = samples++ > 0
            next
        }
        $1 ~ /^[0-9]+$/ && NF >= 12 {
            if ($1 == prism || $1 == mock || $12 == name || $12 == "top" || $12 == "curl" || $12 == "jq") next
            sum += $9
            if ($9 > topcpu) { topcpu = $9; topname = $12 }
        }
        END {
            flush()
            if (k) printf "%.0f%% (peak %.0f%% %s)", other / k, peak, peakname
            else printf "n/a"
        }' "$OUT/top-run.txt"
}
# Seconds since midnight, the clock top prints.
day_seconds() { date '+%H %M %S' | awk '{ print $1 * 3600 + $2 * 60 + $3 }'; }
# One line per thread of a process: "tid ticks name" (top -H would show the whole process on
# the main thread's row, so the per-thread counters are read directly).
thread_ticks() {
    cat /proc/"$1"/task/*/stat 2>/dev/null | awk '{
        match($0, /\(.*\)/)
        name = substr($0, RSTART + 1, RLENGTH - 2)
        gsub(/[^A-Za-z0-9_.-]/, "_", name)
        split(substr($0, RSTART + RLENGTH + 1), f, " ")
        print $1, f[12] + f[13], name
    }' || true
}
# Markdown rows "| name | threads | CPU s | % of one core |" from two thread_ticks snapshots
# taken WALL seconds apart, per thread name, busiest first.
thread_rows() {
    awk -v hz="$TICKS_PER_S" -v wall="$3" '
        FNR == NR { before[$1] = $2; next }
        {
            d = $2 - (($1 in before) ? before[$1] : 0)
            cpu[$3] += d
            if (d > 0) busy[$3]++
            all[$3]++
        }
        END {
            for (n in cpu)
                printf "| %s | %d (%d busy) | %.2f | %.0f%% |\n", n, all[n], busy[n], cpu[n] / hz, 100 * cpu[n] / hz / wall
        }' "$1" "$2" | sort -t'|' -k4 -rn
}

# stop PID...: SIGTERM, then SIGKILL whatever is still there after STOP_WAIT tenths of a second
# (50 unless the script sets it).
stop() {
    local pid
    for pid in "$@"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "$@"; do
        for _ in $(seq "${STOP_WAIT:-50}"); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

# start_mock: the mock upstream on a free loopback port, stopped with the script's other PIDS;
# sets MOCK_PID, MOCK_ADDR (host:port) and MOCK_URL. Needs BIN, WORK, OUT, PIDS, log and die.
start_mock() {
    "$BIN/prism-mock-upstream" --listen 127.0.0.1:0 >"$WORK/mock.stdout" 2>"$OUT/mock.log" &
    MOCK_PID=$!
    PIDS+=("$MOCK_PID")
    MOCK_ADDR=""
    for _ in $(seq 100); do
        MOCK_ADDR="$(sed -n 's/^listening on //p' "$WORK/mock.stdout" | head -1)"
        [[ -n "$MOCK_ADDR" ]] && break
        kill -0 "$MOCK_PID" 2>/dev/null || die "the mock upstream exited; see $OUT/mock.log"
        sleep 0.1
    done
    [[ -n "$MOCK_ADDR" ]] || die "the mock upstream did not report its address"
    MOCK_URL="http://$MOCK_ADDR"
    log "mock upstream on $MOCK_URL (pid $MOCK_PID)"
}

# The set-up bench/faults.sh and bench/soak.sh share: builds prism, the mock and prism-chaos
# (unless SKIP_BUILD=1) in $PROFILE, empties $OUT, makes $WORK (prism-NAME.XXXXXX), stops every
# process in $PIDS and removes $WORK on exit, and starts the mock upstream.
start_chaos_run() {
    build_bins -p prism-server -p prism-testkit -p prism-bench
    mkdir -p "$OUT"
    rm -rf "${OUT:?}"/*
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-$1.XXXXXX")"
    PIDS=()
    trap chaos_cleanup EXIT
    start_mock
}
chaos_cleanup() {
    trap - EXIT
    stop "${PIDS[@]}"
    rm -rf "$WORK"
}

# build_bins CARGO_ARGS...: `cargo build` of the given packages and binaries in $PROFILE (release
# unless set; debug builds cargo's dev profile into target/debug), unless SKIP_BUILD=1.
build_bins() {
    [[ "${SKIP_BUILD:-0}" == 1 ]] && return 0
    local profile="${PROFILE:-release}"
    [[ "$profile" == debug ]] && profile=dev
    log "building ${PROFILE:-release} binaries"
    (cd "$ROOT" && cargo build --profile "$profile" "$@") || die "build failed"
}
# require_bins NAME...: dies unless each is an executable in $BIN.
require_bins() {
    local b
    for b in "$@"; do
        [[ -x "$BIN/$b" ]] || die "$BIN/$b is missing"
    done
}
# require_tools NAME...: dies unless each is on the PATH.
require_tools() {
    local tool
    for tool in "$@"; do
        command -v "$tool" >/dev/null || die "$tool is required"
    done
}

# bench_start NAME: makes $OUT and a fresh $WORK (prism-NAME.XXXXXX), empties PIDS and PRISM_PID;
# on exit stops $PRISM_PID and every process in $PIDS (stop), removes $WORK and keeps the exit
# status; INT and TERM exit 130. Emptying $OUT is the script's own choice (some keep subfolders).
bench_start() {
    mkdir -p "$OUT"
    WORK="$(mktemp -d "${TMPDIR:-/tmp}/prism-$1.XXXXXX")"
    PIDS=()
    PRISM_PID=""
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}
bench_cleanup() {
    local rc=$?
    trap - EXIT
    stop ${PRISM_PID:+"$PRISM_PID"} "${PIDS[@]}"
    rm -rf "$WORK"
    exit "$rc"
}

# describe_machine: "name: value" lines on the machine and the tree, for a run's env.txt.
describe_machine() {
    echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
    echo "nproc: $(nproc)"
    echo "cpu: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)"
    echo "memory: $(free -m | awk '/^Mem:/ { print $2 " MiB" }')"
    echo "kernel: $(uname -sr)"
    echo "rustc: $(rustc --version 2>/dev/null || echo unknown)"
    echo "data dir filesystem: $(df -T "$WORK" | awk 'NR == 2 { print $2 }')"
    echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet 2>/dev/null || echo ' (dirty)')"
}
# describe_load: the load average now and the processes busy now (≥ 5% of a core over a second),
# which compete with the run for the same cores.
describe_load() {
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "busy processes before the run: $(top -b -n 2 -d 1 | awk '/^top -/ { n++ } n == 2 && $1 ~ /^[0-9]+$/ && $9 + 0 >= 5 { printf "%s %s%%  ", $12, $9 }')"
}
# sample_top: the whole machine every half second (busy processes only) into $OUT/top-run.txt,
# for interference's "others" column; stopped with $PIDS.
sample_top() {
    top -b -w 200 -d 0.5 2>/dev/null |
        awk '/^top -/ || ($1 ~ /^[0-9]+$/ && $9 > 0) { print; fflush() }' >"$OUT/top-run.txt" &
    PIDS+=($!)
}

# now: the time in seconds since the epoch, with nanoseconds.
now() { date +%s.%N; }
# status_kib PID FIELD: a /proc/PID/status field in KiB (VmHWM, VmRSS).
status_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# free_port: a free loopback TCP port (prism-loadgen's, where it is built).
free_port() {
    if [[ -x "$BIN/prism-loadgen" ]]; then
        "$BIN/prism-loadgen" free-port
    else
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    fi
}

# mock_provider_toml: the config's provider table sending every model to the mock ($MOCK_URL).
# Keys printed right after it belong to the same table.
mock_provider_toml() {
    printf '[[providers]]\nname = "mock"\nbase_url = "%s/v1"\nmodels = ["*"]\n' "$MOCK_URL"
}
# create_key DATA [TENANT]: prints a new key of TENANT (bench) in data dir DATA.
create_key() { "${PRISM_BIN:-$BIN/prism}" keys create --tenant "${2:-bench}" --data-dir "$1"; }
# serve_prism LOGS DATA [CONFIG [FILTER]]: `prism serve` ($PRISM_BIN, else $BIN/prism) on a free
# loopback port over data dir DATA, with CONFIG (none or "": the defaults) and PRISM_LOG=FILTER
# (warn); its stdout and log go to LOGS.stdout and LOGS.log. Returns once /health answers, and
# dies if prism exits or stays unhealthy for 10 s. Sets PRISM_PID, PRISM_PORT and PRISM_URL;
# bench_cleanup stops the last one started, `stop "$PRISM_PID"` one before.
serve_prism() {
    local logs="$1" data="$2" config="${3:-}" filter="${4:-warn}" args=()
    [[ -n "$config" ]] && args=(--config "$config")
    PRISM_PORT="$(free_port)"
    PRISM_URL="http://127.0.0.1:$PRISM_PORT"
    PRISM_LOG="$filter" "${PRISM_BIN:-$BIN/prism}" serve --listen "127.0.0.1:$PRISM_PORT" \
        --data-dir "$data" "${args[@]}" >"$logs.stdout" 2>"$logs.log" &
    PRISM_PID=$!
    for _ in $(seq 100); do
        curl -fsS "$PRISM_URL/health" >/dev/null 2>&1 && return 0
        kill -0 "$PRISM_PID" 2>/dev/null || die "prism exited; see $logs.log"
        sleep 0.1
    done
    die "prism did not become healthy on $PRISM_URL; see $logs.log"
}
# wait_idle KEY [URL]: waits (60 s at most) until KEY's tenant has no async job pending or running
# on URL ($PRISM_URL).
wait_idle() {
    local key="$1" url="${2:-$PRISM_URL}" status busy
    for _ in $(seq 600); do
        busy=0
        for status in pending running; do
            curl -fsS -H "Authorization: Bearer $key" "$url/v1/async?status=$status&limit=1" |
                grep -q '"data":\[\]' || busy=1
        done
        [[ "$busy" == 0 ]] && return 0
        sleep 0.1
    done
    log "warning: jobs still unfinished after 60 s"
}

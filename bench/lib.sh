# Shared by the benchmark scripts (run.sh, batch.sh, lambda.sh, faults.sh, soak.sh, ...): stopping child
# processes, and process accounting: CPU time
# and per-thread CPU of a process from /proc, and the load other processes put on the machine
# from `top` samples. Sourced, not run.

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
    if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
        local flag=()
        [[ "$PROFILE" == release ]] && flag=(--release)
        (cd "$ROOT" && cargo build "${flag[@]}" -p prism-server -p prism-testkit -p prism-bench) ||
            die "build failed"
    fi
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

#!/usr/bin/env bash
# Side by side (issue 12): ROUNDS rounds of one submit step (run.sh) per variant, the order rotating
# each round. A variant is NAME:BINARY[:STORAGE], BINARY in bin/, STORAGE the `[storage]` lines of
# its config, `;`-separated. MODE=sched records `perf sched` and prints the writer thread's
# scheduling (th.awk); SKIP_E2E=1 leaves out the end-to-end step; DUR sets the step's length.
#   ab.sh 3 base:prism-base new:prism-new "nice10:prism-new:writer_nice = -10"
set -uo pipefail
cd "$(dirname "$0")"; export BIN_DIR="${BIN_DIR:-$PWD/bin}"
ROUNDS=${1:?rounds}; shift
variants=("$@"); n=${#variants[@]}
MODE="${MODE:-plain}"
for r in $(seq "$ROUNDS"); do
  for i in $(seq 0 $((n - 1))); do
    IFS=: read -r name bin storage <<< "${variants[$(( (i + r) % n ))]}"
    EXTRA=""; [[ -n "${storage:-}" ]] && EXTRA="[storage]"$'\n'"${storage//;/$'\n'}"
    export EXTRA
    d=out/ab-r$r-$name
    ./run.sh "bin/$bin" "$d" "$MODE" >/dev/null 2>&1
    sched=""
    if [[ "$MODE" == sched ]]; then
      W=$(awk '{print $5}' "$d/info.txt" | head -1)
      perf sched timehist -i "$d/sched.data" -t "$W" --state 2>/dev/null > "$d/writer_timehist.txt"
      sched=" | $(awk -f th.awk "$d/writer_timehist.txt" | head -1)"
      rm -f "$d/sched.data"
    fi
    echo "r$r $name load $(head -1 "$d/info.txt" | sed 's/.*load //') | $(grep 'submit p50' "$d/info.txt") | $(grep 'cpu us' "$d/info.txt")$sched | $(python3 an.py "$d/prism.log" 2>/dev/null | head -1)"
  done
done

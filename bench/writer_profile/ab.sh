#!/usr/bin/env bash
# ab.sh ROUNDS: variants interleaved, order rotating per round.
cd "$(dirname "$0")"; export BIN_DIR="${BIN_DIR:-$PWD/bin}"
ROUNDS=${1:-3}
variants=(base new new-nice0 new-frames2048)
for r in $(seq $ROUNDS); do
  for i in 0 1 2 3; do
    v=${variants[$(( (i + r) % 4 ))]}
    case $v in
      base) bin=bin/prism-base; extra="" ;;
      new) bin=bin/prism-new; extra="" ;;
      new-nice0) bin=bin/prism-new; extra=$'[storage]\nwriter_nice = 0' ;;
      new-frames2048) bin=bin/prism-new; extra=$'[storage]\nwal_restart_frames = 2048' ;;
    esac
    EXTRA="$extra" ./run.sh $bin out/ab-r$r-$v plain >/dev/null 2>&1
    echo "r$r $v $(head -1 out/ab-r$r-$v/info.txt | sed 's/.*load //') | $(grep 'submit p50' out/ab-r$r-$v/info.txt) | $(grep 'cpu us' out/ab-r$r-$v/info.txt) | $(python3 an.py out/ab-r$r-$v/prism.log | head -1)"
  done
done

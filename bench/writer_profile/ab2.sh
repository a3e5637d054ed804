#!/usr/bin/env bash
cd "$(dirname "$0")"; export BIN_DIR="${BIN_DIR:-$PWD/bin}"
for r in 1 2 3 4; do
  if ((r % 2)); then order="base new"; else order="new base"; fi
  for v in $order; do
    if [[ $v == base ]]; then bin=bin/prism-base; EXTRA=""; else bin=bin/prism-new; EXTRA=$'[storage]\nwriter_nice = 0'; fi
    export EXTRA
    SKIP_E2E=1 ./run.sh $bin out/ab2-r$r-$v plain >/dev/null 2>&1
    d=out/ab2-r$r-$v
    echo "r$r $v $(head -1 $d/info.txt | sed 's/.*load //') | $(grep 'submit p50' $d/info.txt) | $(python3 an.py $d/prism.log 2>/dev/null | head -1)"
  done
done

#!/usr/bin/env bash
cd "$(dirname "$0")"; export BIN_DIR="${BIN_DIR:-$PWD/bin}"
variants=(base f8192 nice10)
for r in 1 2 3; do
  for i in 0 1 2; do
    v=${variants[$(( (i + r) % 3 ))]}
    case $v in
      base) bin=bin/prism-base; EXTRA="" ;;
      f8192) bin=bin/prism-new; EXTRA=$'[storage]\nwriter_nice = 0\nwal_restart_frames = 8192' ;;
      nice10) bin=bin/prism-new; EXTRA=$'[storage]\nwriter_nice = -10\nwal_restart_frames = 2048' ;;
    esac
    export EXTRA
    SKIP_E2E=1 ./run.sh $bin out/ab4-r$r-$v plain >/dev/null 2>&1
    d=out/ab4-r$r-$v
    echo "r$r $v $(head -1 $d/info.txt | sed 's/.*load //') | $(grep 'submit p50' $d/info.txt) | $(python3 an.py $d/prism.log 2>/dev/null | head -1)"
  done
done

#!/usr/bin/env bash
cd "$(dirname "$0")"; export BIN_DIR="${BIN_DIR:-$PWD/bin}"
for r in 1 2; do
  for v in nice10 nice0; do
    [[ $r == 2 ]] && v=$([[ $v == nice10 ]] && echo nice0 || echo nice10)
    bin=bin/prism-new; EXTRA=""; [[ $v == nice0 ]] && EXTRA=$'[storage]\nwriter_nice = 0'; export EXTRA
    SKIP_E2E=1 DUR=6s ./run.sh $bin out/nab-r$r-$v sched >/dev/null 2>&1
    d=out/nab-r$r-$v; W=$(awk '{print $5}' $d/info.txt|head -1)
    perf sched timehist -i $d/sched.data -t $W --state 2>/dev/null > $d/writer_timehist.txt
    echo "r$r $v load $(head -1 $d/info.txt | sed 's/.*load //') | $(grep 'submit p50' $d/info.txt) | $(awk -f th.awk $d/writer_timehist.txt | head -1) | $(python3 an.py $d/prism.log 2>/dev/null| head -1)"
    rm -f $d/sched.data
  done
done

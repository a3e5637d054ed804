#!/usr/bin/env bash
# Issue 12 (s7b): the profiling and side-by-side runs behind BENCHMARKS.md "where the submit tail comes from". Scratch tools, kept to be rerun; bin/ holds prism-base, prism-new, prism-mock-upstream, prism-loadgen.
# run.sh PRISM_BIN OUTDIR MODE [RATE]
# MODE: plain | strace | sched | perf  — one submit step at RATE with GETs at 200/s, then e2e 20000.
set -uo pipefail
PRISM="$1"; OUT="$2"; MODE="$3"; RATE="${4:-2000}"; E2E="${E2E:-20000}"; DUR="${DUR:-10s}"
# BIN_DIR holds prism-mock-upstream and prism-loadgen (release), and the prism binaries compared.
B="${BIN_DIR:-$(dirname "$0")/bin}"
mkdir -p "$OUT"; rm -rf "$OUT"/*
DATA="$OUT/data"
"$B/prism-mock-upstream" --listen 127.0.0.1:0 >"$OUT/mock.stdout" 2>"$OUT/mock.log" & MOCK=$!
sleep 0.3; MOCK_URL="http://$(sed -n 's/^listening on //p' "$OUT/mock.stdout" | head -1)"
KEY="$("$PRISM" keys create --tenant bench --data-dir "$DATA")"
EKEY="$("$PRISM" keys create --tenant bench-e2e --data-dir "$DATA")"
printf '[[providers]]\nname = "mock"\nbase_url = "%s/v1"\nmodels = ["*"]\n\n[workers]\nconcurrency = 256\n%s\n' "$MOCK_URL" "${EXTRA:-}" >"$OUT/prism.toml"
PORT=$((20000 + RANDOM % 20000)); URL="http://127.0.0.1:$PORT"
PRISM_LOG="${LEVEL:-warn,prism_embedded::writer=debug}" "$PRISM" serve --listen 127.0.0.1:$PORT --data-dir "$DATA" --config "$OUT/prism.toml" >"$OUT/prism.stdout" 2>"$OUT/prism.log" & PID=$!
for _ in $(seq 100); do curl -fsS "$URL/health" >/dev/null 2>&1 && break; sleep 0.1; done
W=$(for t in /proc/$PID/task/*; do [[ "$(cat $t/comm)" == prism-sqlite-wr* ]] && basename $t; done)
# CKPT_NICE: renice the checkpoint thread from outside (an experiment before a config knob).
if [[ -n "${CKPT_NICE:-}" ]]; then
  for t in /proc/$PID/task/*; do [[ "$(cat $t/comm)" == prism-sqlite-ch* ]] && renice -n "$CKPT_NICE" -p "$(basename $t)" >/dev/null; done
fi
echo "prism $PID writer tid $W load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/info.txt"
TR=""
case "$MODE" in
  strace) strace -f -tt -T -e trace=fdatasync,fsync,futex,pwrite64,pread64,clock_nanosleep,nanosleep,fcntl -p "$W" -o "$OUT/strace.txt" & TR=$! ;;
  sched) perf sched record -o "$OUT/sched.data" -- sleep 14 >/dev/null 2>&1 & TR=$! ;;
  perf) perf record -F 999 -g -a -o "$OUT/perf.data" -- sleep ${PERF_SECS:-14} >/dev/null 2>&1 & TR=$! ;;
  flat) perf record -F 499 -a -o "$OUT/perf.data" -- sleep ${PERF_SECS:-14} >/dev/null 2>&1 & TR=$! ;;
  offcpu) perf record -e sched:sched_switch -g -p "$PID" -o "$OUT/off.data" -- sleep 14 >/dev/null 2>&1 & TR=$! ;;
esac
sleep 0.5
ID="$(curl -fsS -H "Authorization: Bearer $KEY" -H 'x-prism-async: true' -H 'content-type: application/json' -d '{"model":"mock","messages":[{"role":"user","content":"hi"}]}' "$URL/v1/chat/completions" | jq -r .id)"
"$B/prism-loadgen" --threads 1 --json get --url "$URL" --key "$KEY" --model mock --job-id "$ID" --rate 200 --duration "$DUR" --warmup 2s >"$OUT/get.json" 2>"$OUT/get.txt" & G=$!
"$B/prism-loadgen" --threads 1 --json submit --url "$URL" --key "$KEY" --model mock --rate "$RATE" --duration "$DUR" --warmup 2s --samples "$OUT/submit.csv" >"$OUT/submit.json" 2>"$OUT/submit.txt"
wait $G
if [[ "$MODE" == strace ]]; then sleep 0.5; kill $TR 2>/dev/null; wait $TR 2>/dev/null; fi
sleep 2
if [[ "${SKIP_E2E:-0}" != 1 ]]; then
  T0=$(awk '{print $14+$15}' /proc/$PID/stat); M0=$(awk '{print $14+$15}' /proc/$MOCK/stat)
  "$B/prism-loadgen" --threads 1 --json e2e --url "$URL" --key "$EKEY" --model mock --jobs "$E2E" --concurrency 128 >"$OUT/e2e.json" 2>"$OUT/e2e.txt"
  T1=$(awk '{print $14+$15}' /proc/$PID/stat); M1=$(awk '{print $14+$15}' /proc/$MOCK/stat)
  echo "e2e cpu us per job: prism $(( (T1-T0)*10000*1000/E2E/1000 )) mock $(( (M1-M0)*10000*1000/E2E/1000 ))" >> "$OUT/info.txt"
fi
[[ -n "$TR" && "$MODE" != strace ]] && wait $TR
cat /proc/$PID/stat | awk '{print "prism utime+stime ticks", $14+$15}' >> "$OUT/info.txt"
echo "pids prism=$PID mock=$MOCK" >> "$OUT/info.txt"; kill $PID; wait $PID 2>/dev/null; kill $MOCK; wait $MOCK 2>/dev/null
echo "submit p50/p99: $(jq -r '[.latency_ms.p50,.latency_ms.p99]|@tsv' "$OUT/submit.json")  get p99: $(jq -r .latency_ms.p99 "$OUT/get.json")  e2e: $(jq -r .jobs_per_s "$OUT/e2e.json" 2>/dev/null)" | tee -a "$OUT/info.txt"

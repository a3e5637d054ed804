#!/usr/bin/env bash
# The Uploads API benchmark (issue 13), not CI: bench/uploads.py against `prism serve` on the
# embedded backend and on the AWS backend over the emulator (moto, started here). Per backend
# and size (SIZES_MB, default "50 200"; LINES lines, default 50,000): POST /v1/files vs the
# Uploads API in parts (AWS_PART_BYTES, default 4 MiB; EMBEDDED_PART_BYTES, default 64 MiB),
# parts and complete timed apart; a batch over the uploaded file against the zero-latency mock;
# the output downloaded; peak RSS of prism, the mock, the emulator and the client. Raw JSON lines
# in bench/out/uploads/results.jsonl, the table in bench/out/uploads/summary.md.
# Knobs: BACKENDS SIZES_MB LINES AWS_PART_BYTES EMBEDDED_PART_BYTES PROFILE (debug|release,
# default release) SKIP_BUILD=1, BIN_DIR (binaries from elsewhere), SKIP_BATCH=1 (uploads only),
# BENCH_OUT (another output directory).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PROFILE="${PROFILE:-release}"
OUT="${BENCH_OUT:-$ROOT/bench/out/uploads}"
export BIN="${BIN_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE}"
if [[ "${SKIP_BUILD:-0}" != 1 ]]; then
    flag=$([[ "$PROFILE" == release ]] && echo --release || true)
    cargo build $flag -p prism-server -p prism-testkit -p prism-aws --bin prism --bin prism-mock-upstream --bin prism-provision
fi
mkdir -p "$OUT"
# shellcheck source=scripts/emulator.sh
source scripts/emulator.sh
start_emulator "$OUT/moto.log"
export EMULATOR_PID="$moto_pid" INPUT_DIR="${INPUT_DIR:-$OUT}"
.venv/bin/python bench/uploads.py | tee "$OUT/results.jsonl"
{
    echo "| Backend | Input | Lines | POST /v1/files | Uploads API: parts | complete | total | Batch | Output | Download | prism peak RSS after upload / end | mock | emulator | client |"
    echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    jq -r '
      def mbs(s): (.size_bytes / 1000000 / s * 10 | round / 10 | tostring) + " MB/s";
      "| \(.backend) | \(.size_bytes / 1000000 | round) MB | \(.lines) | \(.files_create_s * 10 | round / 10) s (\(mbs(.files_create_s))) | \(.parts) × \(.part_bytes / 1048576) MiB: \(.parts_s * 10 | round / 10) s (\(mbs(.parts_s))) | \(.complete_s * 10 | round / 10) s (\(mbs(.complete_s))) | \(mbs(.parts_s + .complete_s)) | \(.batch_status), \(.completed_lines) lines, \(.batch_s | round) s | \(.output_lines) lines, \(.output_bytes / 1000000 | round) MB\(if .output_custom_ids_once then ", every custom_id once: \(.output_custom_ids_once == .lines)" else "" end) | \(.download_s * 10 | round / 10) s | \(.prism_peak_rss_after_upload_kib / 1024 | round) / \(.prism_peak_rss_kib / 1024 | round) MiB | \(.mock_peak_rss_kib / 1024 | round) MiB | \(if .emulator_peak_rss_kib then (.emulator_peak_rss_kib / 1024 | round | tostring) + " MiB" else "-" end) | \(.client_peak_rss_kib / 1024 | round) MiB |"' "$OUT/results.jsonl"
} | tee "$OUT/summary.md"

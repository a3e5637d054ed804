"""The Uploads API benchmark (bench/uploads.sh runs it): for each backend and input size, a fresh
`prism serve` (on AWS: `--backend aws` over the emulator, its stack from `prism-provision`), a
JSONL input of LINES lines and SIZE MB, sent once with `POST /v1/files` and once in parts through
the Uploads API (the SDK's calls, timed apart: parts, then complete), then a batch over the
uploaded file against the zero-latency mock, its output downloaded (through the pre-signed
redirect on AWS). Peak RSS (VmHWM) of every process: prism, the mock, the emulator, this client.
Prints one JSON object per run; bench/uploads.sh turns them into the BENCHMARKS.md table."""

import hashlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from openai import OpenAI

import benchlib
from benchlib import mock_provider, start_mock, status_kib, write_input

BIN = Path(os.environ["BIN"])
BACKENDS = os.environ.get("BACKENDS", "embedded aws").split()
SIZES_MB = [int(s) for s in os.environ.get("SIZES_MB", "50 200").split()]
LINES = int(os.environ.get("LINES", "50000"))
AWS_PART = int(os.environ.get("AWS_PART_BYTES", str(4 * 1024 * 1024)))
EMBEDDED_PART = int(os.environ.get("EMBEDDED_PART_BYTES", str(64 * 1024 * 1024)))
MODEL = "gpt-bench"
# How often a running batch's progress is printed (stderr).
PROGRESS_EVERY_S = int(os.environ.get("PROGRESS_EVERY_S", "60"))


def start_prism(backend, work, mock_port):
    # On `serve --backend aws` the request cap is http.max_body_bytes (Lambda's 6 MB by default);
    # raised here so that POST /v1/files of the whole file can be timed next to the Uploads API.
    config = (mock_provider(mock_port)
              + ("[http]\nmax_body_bytes = 220000000\n" if backend == "aws" else "")
              + "[files]\nredirect_downloads_above = 6291456\n")
    stack = f"upb-{os.getpid()}-{int(time.time())}" if backend == "aws" else None
    return benchlib.start_prism(BIN, work, config, stack=stack)


def hwm_kib(pid):
    return status_kib(pid, "VmHWM")


def run(backend, size_mb, input_path, mock, emulator_pid):
    work = Path(tempfile.mkdtemp(prefix=f"prism-uploads-{backend}-{size_mb}-"))
    prism, base, key = start_prism(backend, work, mock[1])
    client = OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=1800)
    size = input_path.stat().st_size
    result = {"backend": backend, "size_bytes": size, "lines": LINES}
    try:
        t = time.monotonic()
        with input_path.open("rb") as f:
            plain = client.files.create(file=f, purpose="batch")
        result["files_create_s"] = time.monotonic() - t
        assert plain.bytes == size
        client.files.delete(plain.id)
        part_size = AWS_PART if backend == "aws" else EMBEDDED_PART
        result["part_bytes"] = part_size
        md5 = hashlib.md5()
        t = time.monotonic()
        upload = client.uploads.create(bytes=size, filename=input_path.name, mime_type="application/jsonl",
                                       purpose="batch")
        part_ids = []
        with input_path.open("rb") as f:
            while chunk := f.read(part_size):
                md5.update(chunk)
                part_ids.append(client.uploads.parts.create(upload.id, data=chunk).id)
        result["parts_s"] = time.monotonic() - t
        result["parts"] = len(part_ids)
        t = time.monotonic()
        done = client.uploads.complete(upload.id, part_ids=part_ids, md5=md5.hexdigest())
        result["complete_s"] = time.monotonic() - t
        assert done.status == "completed" and done.file.bytes == size, done
        result["prism_peak_rss_after_upload_kib"] = hwm_kib(prism.pid)
        if os.environ.get("SKIP_BATCH") == "1":
            result.update(batch_status="skipped", completed_lines=0, batch_s=0, download_s=0,
                          output_lines=0, output_bytes=0, prism_peak_rss_kib=hwm_kib(prism.pid),
                          mock_peak_rss_kib=hwm_kib(mock[0].pid),
                          client_peak_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            if emulator_pid:
                result["emulator_peak_rss_kib"] = hwm_kib(emulator_pid)
            return result
        t = time.monotonic()
        batch = client.batches.create(input_file_id=done.file.id, endpoint="/v1/chat/completions",
                                      completion_window="24h")
        shown = time.monotonic()
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(1)
            batch = client.batches.retrieve(batch.id)
            if time.monotonic() - shown >= PROGRESS_EVERY_S:
                shown = time.monotonic()
                counts = batch.request_counts
                print(f"[uploads.py] {backend} {size_mb} MB: batch {batch.status} after "
                      f"{shown - t:.0f} s, {counts.completed if counts else 0} lines completed, "
                      f"prism RSS {status_kib(prism.pid, 'VmRSS') // 1024} MiB (peak "
                      f"{hwm_kib(prism.pid) // 1024} MiB)", file=sys.stderr, flush=True)
        result["batch_s"] = time.monotonic() - t
        result["batch_status"] = batch.status
        result["completed_lines"] = batch.request_counts.completed
        t = time.monotonic()
        out_lines = 0
        out_bytes = 0
        # Every custom_id of the input (r0 .. r{LINES-1}) must be in the output exactly once.
        seen = {}
        with client.files.with_streaming_response.content(batch.output_file_id) as response:
            for line in response.iter_lines():
                if not line:
                    continue
                out_lines += 1
                out_bytes += len(line.encode()) + 1
                custom_id = json.loads(line)["custom_id"]
                seen[custom_id] = seen.get(custom_id, 0) + 1
        result["download_s"] = time.monotonic() - t
        result["output_lines"] = out_lines
        result["output_bytes"] = out_bytes
        result["output_custom_ids_once"] = sum(1 for i in range(LINES) if seen.get(f"r{i}") == 1)
        result["output_custom_ids_missing"] = sum(1 for i in range(LINES) if f"r{i}" not in seen)
        result["output_custom_ids_repeated"] = sum(1 for n in seen.values() if n > 1)
        result["prism_peak_rss_kib"] = hwm_kib(prism.pid)
        result["mock_peak_rss_kib"] = hwm_kib(mock[0].pid)
        if emulator_pid:
            result["emulator_peak_rss_kib"] = hwm_kib(emulator_pid)
        result["client_peak_rss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    finally:
        prism.terminate()
        prism.wait(timeout=60)
    return result


def main():
    work = Path(os.environ.get("INPUT_DIR", tempfile.gettempdir()))
    mock, mock_port = start_mock(BIN)
    emulator_pid = int(os.environ["EMULATOR_PID"]) if os.environ.get("EMULATOR_PID") else None
    try:
        for size_mb in SIZES_MB:
            path = work / f"uploads-bench-{size_mb}mb-{LINES}.jsonl"
            # LINES lines of about size_mb MB in all.
            write_input(path, LINES, size_mb * 1_000_000 // LINES, MODEL)
            for backend in BACKENDS:
                print(json.dumps(run(backend, size_mb, path, (mock, mock_port),
                                     emulator_pid if backend == "aws" else None)), flush=True)
    finally:
        mock.terminate()


if __name__ == "__main__":
    sys.exit(main())

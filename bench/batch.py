#!/usr/bin/env python3
"""Batch API benchmarks against `prism serve` (embedded backend) and the mock upstream, on
loopback. Standard library only. Run through bench/batch.sh, which builds the release binaries.

Cases:
  throughput  LINES lines toward `mock-slow-<LATENCY_MS>` with batch concurrency CONCURRENCY:
              wall time from create to completed against the ideal LINES * latency / CONCURRENCY.
  memory      batches over ~50 MB and ~200 MB inputs against the instant mock: prism's peak RSS
              (VmHWM) in each, which must stay flat in the file's size.
Each case runs in a fresh prism process and data directory. Results go to OUT as JSON and a
markdown summary.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

BIN = Path(os.environ["BIN"])
OUT = Path(os.environ["OUT"])
LINES = int(os.environ.get("LINES", "50000"))
LATENCY_MS = int(os.environ.get("LATENCY_MS", "200"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "500"))
MEMORY_SIZES_MB = [int(x) for x in os.environ.get("MEMORY_SIZES_MB", "50 200").split()]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def vm_hwm_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


class Prism:
    """One `prism serve` on a fresh data directory with the given [batches]/[workers] config."""

    def __init__(self, mock_url: str, extra_config: str):
        self.dir = Path(tempfile.mkdtemp(prefix="prism-batch-bench-"))
        config = self.dir / "prism.toml"
        config.write_text(
            f'[[providers]]\nname = "mock"\nbase_url = "{mock_url}/v1"\nmodels = ["*"]\n\n'
            + extra_config
        )
        data = self.dir / "data"
        self.key = subprocess.run(
            [BIN / "prism", "keys", "create", "--tenant", "bench", "--data-dir", data],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [BIN / "prism", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
             "--config", config],
            env={**os.environ, "PRISM_LOG": "warn"},
            stdout=subprocess.DEVNULL,
        )
        wait_http(self.base + "/health")

    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str = "application/json") -> dict:
        req = urllib.request.Request(self.base + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.key}")
        if body is not None:
            req.add_header("Content-Type", content_type)
        with urllib.request.urlopen(req, timeout=600) as response:
            return json.load(response)

    def upload(self, path: Path) -> dict:
        # Streamed from disk with curl: a 200 MB body is not built in this process's memory.
        out = subprocess.run(
            ["curl", "-sS", "-H", f"Authorization: Bearer {self.key}", "-F", "purpose=batch",
             "-F", f"file=@{path}", f"{self.base}/v1/files"],
            check=True, capture_output=True, text=True,
        ).stdout
        return json.loads(out)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def write_input(path: Path, lines: int, model: str, content_bytes: int) -> int:
    filler = "x" * max(0, content_bytes)
    with path.open("w") as f:
        for i in range(lines):
            f.write(json.dumps({
                "custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions",
                "body": {"model": model, "messages": [{"role": "user", "content": f"{i} {filler}"}]},
            }) + "\n")
    return path.stat().st_size


def run_batch(prism: Prism, input_path: Path, sample_rss: bool = True) -> dict:
    t0 = time.monotonic()
    uploaded = prism.upload(input_path)
    upload_s = time.monotonic() - t0
    created_at = time.monotonic()
    batch = prism.request("POST", "/v1/batches", json.dumps({
        "input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions",
        "completion_window": "24h"}).encode())
    in_progress_seen = None
    peak_rss = 0
    while batch["status"] not in ("completed", "failed", "expired", "cancelled"):
        time.sleep(0.25)
        if sample_rss:
            peak_rss = max(peak_rss, vm_hwm_kib(prism.proc.pid))
        batch = prism.request("GET", f"/v1/batches/{batch['id']}")
        if in_progress_seen is None and batch["status"] == "in_progress":
            in_progress_seen = time.monotonic()
    done_at = time.monotonic()
    peak_rss = max(peak_rss, vm_hwm_kib(prism.proc.pid))
    output_lines = 0
    if batch.get("output_file_id"):
        req = urllib.request.Request(f"{prism.base}/v1/files/{batch['output_file_id']}/content")
        req.add_header("Authorization", f"Bearer {prism.key}")
        with urllib.request.urlopen(req, timeout=600) as response:
            for _ in response:
                output_lines += 1
    return {
        "status": batch["status"],
        "request_counts": batch["request_counts"],
        "output_lines": output_lines,
        "upload_s": round(upload_s, 2),
        "create_to_done_s": round(done_at - created_at, 2),
        "in_progress_to_done_s": round(done_at - in_progress_seen, 2) if in_progress_seen else None,
        "peak_rss_mib": round(peak_rss / 1024, 1),
        "input_bytes": input_path.stat().st_size,
    }


def mock_requests(mock_url: str, model: str) -> int:
    with urllib.request.urlopen(mock_url + "/_stats", timeout=10) as response:
        return json.load(response)["requests"].get(model, 0)


def main() -> int:
    mock_url = sys.argv[1]
    work = Path(tempfile.mkdtemp(prefix="prism-batch-input-"))
    results = {}
    try:
        # Throughput: the model gate (model_concurrency) is the limit, not the chunks.
        model = f"mock-slow-{LATENCY_MS}-{uuid.uuid4().hex[:6]}"
        path = work / "throughput.jsonl"
        write_input(path, LINES, model, 20)
        prism = Prism(mock_url, (
            "[workers]\nconcurrency = 64\n\n[batches]\n"
            f"model_concurrency = {CONCURRENCY}\nline_concurrency = 100\nlines_per_chunk = 1000\n"
            'checkpoint_lines = 500\ncheckpoint_every = "5s"\n'))
        try:
            r = run_batch(prism, path)
        finally:
            prism.stop()
        ideal = LINES * LATENCY_MS / 1000 / CONCURRENCY
        r["ideal_s"] = ideal
        r["ratio"] = round(r["create_to_done_s"] / ideal, 3)
        r["upstream_requests"] = mock_requests(mock_url, model)
        results["throughput"] = r
        print(json.dumps({"throughput": r}), flush=True)
        path.unlink()

        for size_mb in MEMORY_SIZES_MB:
            lines = min(LINES, 50_000)
            content = max(10, size_mb * 1024 * 1024 // lines - 170)
            path = work / f"memory-{size_mb}.jsonl"
            write_input(path, lines, f"gpt-bench-{size_mb}", content)
            prism = Prism(mock_url, "[batches]\nmodel_concurrency = 500\nline_concurrency = 100\n")
            try:
                r = run_batch(prism, path)
            finally:
                prism.stop()
            results[f"memory_{size_mb}mb"] = r
            print(json.dumps({f"memory_{size_mb}mb": r}), flush=True)
            path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    (OUT / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

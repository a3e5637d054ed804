"""What the Python bench scripts share (bench/finalize.py, bench/uploads.py): free ports, waiting
for HTTP, /proc readings, JSONL batch inputs of a given line size, and starting the zero-latency
mock and a fresh `prism serve` (on AWS over the emulator, its stack from `prism-provision`)."""

import json
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def status_kib(pid, field):
    """A field of /proc/PID/status in KiB (VmRSS, VmHWM), 0 when absent."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def write_input(path, lines, line_bytes, model):
    """`lines` chat completion lines of about `line_bytes` bytes each (long user content), with
    custom_ids r0, r1, ...; written once per path."""
    if path.exists():
        return
    with path.open("w") as f:
        for i in range(lines):
            head = json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": model, "messages": [{"role": "user", "content": ""}]}})
            pad = max(0, line_bytes - len(head) - 1)
            f.write(head.replace('"content": ""', '"content": "' + "x" * pad + '"') + "\n")


def start_mock(bin_dir):
    """The zero-latency mock upstream on a free port: (process, port)."""
    port = free_port()
    mock = subprocess.Popen([bin_dir / "prism-mock-upstream", "--listen", f"127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{port}/_stats")
    return mock, port


def mock_provider(mock_port):
    """The config's provider entry sending every model to the mock."""
    return f'[[providers]]\nname = "mock"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\nmodels = ["*"]\n'


def start_prism(bin_dir, work, config_text, stack=None, log_filter="warn"):
    """A fresh `prism serve` with `config_text` as its config and its data in `work`, its log in
    work/prism.log; with `stack` (a name), on AWS over the emulator, a new stack provisioned for
    it. Returns (process, base URL, an API key of tenant `bench`)."""
    config = work / "prism.toml"
    config.write_text(config_text)
    env = dict(os.environ)
    if stack:
        out = subprocess.run([bin_dir / "prism-provision", stack],
                             check=True, capture_output=True, text=True).stdout
        env.update(dict(line.split("=", 1) for line in out.splitlines() if "=" in line))
    data = work / "data"
    key = subprocess.run([bin_dir / "prism", "keys", "create", "--tenant", "bench", "--data-dir", data],
                         env=env, check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    log = open(work / "prism.log", "w")
    proc = subprocess.Popen([bin_dir / "prism", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                             "--config", config], env={**env, "PRISM_LOG": log_filter}, stdout=log, stderr=log)
    wait_http(f"http://127.0.0.1:{port}/health")
    return proc, f"http://127.0.0.1:{port}", key

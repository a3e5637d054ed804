"""RSS of `prism serve` (embedded) under steady async load, then idle (issue 11): whether memory
stays flat while it works and settles back toward its baseline once the work is done. No kills
(bench/soak.sh is the kill soak); this is the memory question alone, with a paced load.

Starts the mock upstream and `prism serve` from BIN (release by default), submits RATE async
chat jobs a second on `mock-slow-LATENCY_MS` for LOAD_S seconds (`x-prism-async: true`), waits
until every job is terminal, then leaves prism idle for IDLE_S seconds. Samples prism's VmRSS
every EVERY_S seconds throughout. Writes samples.csv and summary.md to OUT.

Knobs (environment): BIN, OUT, RATE (100), LOAD_S (600), IDLE_S (300), EVERY_S (10),
LATENCY_MS (200), CONCURRENCY (64, [workers] concurrency).
"""

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx  # the HTTP client the OpenAI SDK in .venv ships with

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BIN", ROOT / "target" / "release"))
OUT = Path(os.environ.get("OUT", ROOT / "bench" / "out" / "idle-tail"))
RATE = float(os.environ.get("RATE", "100"))
LOAD_S = int(os.environ.get("LOAD_S", "600"))
IDLE_S = int(os.environ.get("IDLE_S", "300"))
EVERY_S = int(os.environ.get("EVERY_S", "10"))
LATENCY_MS = int(os.environ.get("LATENCY_MS", "200"))
CONCURRENCY = int(os.environ.get("CONCURRENCY", "64"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def wait_http(url, timeout=60):
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


async def sampler(pid, started, samples, phase):
    while True:
        samples.append((round(time.monotonic() - started), phase[0], rss_kib(pid)))
        await asyncio.sleep(EVERY_S)


async def load(base, key, ids, failures):
    headers = {"authorization": f"Bearer {key}", "x-prism-async": "true"}
    body = {"model": f"mock-slow-{LATENCY_MS}", "messages": [{"role": "user", "content": "soak"}]}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=200)) as client:
        async def submit():
            try:
                r = await client.post("/v1/chat/completions", json=body)
                if r.status_code in (200, 202):
                    ids.append(r.json()["id"])
                else:
                    failures.append(r.status_code)
            except httpx.HTTPError as e:
                failures.append(type(e).__name__)

        start = time.monotonic()
        tasks = []
        for i in range(int(RATE * LOAD_S)):
            due = start + i / RATE
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(submit()))
        await asyncio.gather(*tasks)


async def wait_terminal(base, key, ids):
    headers = {"authorization": f"Bearer {key}"}
    open_ids = list(ids)
    statuses = {}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60,
                                 limits=httpx.Limits(max_connections=32)) as client:
        sem = asyncio.Semaphore(32)

        async def look(job_id):
            async with sem:
                r = await client.get(f"/v1/async/{job_id}")
                return job_id, r.json().get("status") if r.status_code == 200 else None

        while open_ids:
            seen = await asyncio.gather(*(look(i) for i in open_ids))
            open_ids = [i for i, s in seen if s not in ("completed", "failed", "cancelled", "expired")]
            statuses.update(seen)
            if open_ids:
                await asyncio.sleep(2)
    return statuses


async def main():
    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="prism-idle-tail-"))
    mock_port = free_port()
    mock = subprocess.Popen([BIN / "prism-mock-upstream", "--listen", f"127.0.0.1:{mock_port}"],
                            stdout=subprocess.DEVNULL)
    wait_http(f"http://127.0.0.1:{mock_port}/_stats")
    config = work / "prism.toml"
    config.write_text(
        f'[[providers]]\nname = "mock"\nbase_url = "http://127.0.0.1:{mock_port}/v1"\nmodels = ["*"]\n'
        f"[workers]\nconcurrency = {CONCURRENCY}\n"
    )
    data = work / "data"
    key = subprocess.run([BIN / "prism", "keys", "create", "--tenant", "soak", "--data-dir", data],
                         check=True, capture_output=True, text=True).stdout.strip()
    port = free_port()
    log = open(OUT / "prism.log", "w")
    prism = subprocess.Popen([BIN / "prism", "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data,
                              "--config", config], env={**os.environ, "PRISM_LOG": "warn"},
                             stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    wait_http(f"{base}/health")
    started = time.monotonic()
    samples, phase = [], ["start"]
    sampling = asyncio.create_task(sampler(prism.pid, started, samples, phase))
    ids, failures = [], []
    try:
        await asyncio.sleep(EVERY_S)
        phase[0] = "load"
        await load(base, key, ids, failures)
        phase[0] = "drain"
        statuses = await wait_terminal(base, key, ids)
        work_ended = time.monotonic() - started
        phase[0] = "idle"
        await asyncio.sleep(IDLE_S)
        sampling.cancel()
    finally:
        prism.terminate()
        prism.wait(timeout=30)
        mock.terminate()
    completed = sum(1 for s in statuses.values() if s == "completed")
    with (OUT / "samples.csv").open("w") as f:
        f.write("second,phase,rss_kib\n")
        for second, ph, rss in samples:
            f.write(f"{second},{ph},{rss}\n")

    def mb(kib):
        return f"{kib / 1024:.0f}"

    by_phase = {}
    for _, ph, rss in samples:
        by_phase.setdefault(ph, []).append(rss)
    load_rss = by_phase.get("load", [0])
    idle_rss = by_phase.get("idle", [0])
    lines = [
        f"Command: `RATE={RATE:g} LOAD_S={LOAD_S} IDLE_S={IDLE_S} EVERY_S={EVERY_S} "
        f"LATENCY_MS={LATENCY_MS} CONCURRENCY={CONCURRENCY} .venv/bin/python bench/idle_tail.py` (BIN={BIN})",
        "",
        f"Jobs submitted {len(ids)} ({len(failures)} refused or failed to send), completed {completed}, "
        f"work ended at {work_ended:.0f} s.",
        f"RSS MB: baseline {mb(by_phase.get('start', [0])[0])}; under load first {mb(load_rss[0])}, "
        f"peak {mb(max(load_rss))}, last {mb(load_rss[-1])}; idle first {mb(idle_rss[0])}, "
        f"last {mb(idle_rss[-1])} (after {IDLE_S} s idle).",
        "",
        "| second | phase | RSS MB |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {ph} | {mb(rss)} |" for s, ph, rss in samples]
    (OUT / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if completed == len(ids) and not failures else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

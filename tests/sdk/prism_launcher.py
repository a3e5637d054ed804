"""Starts the mock upstream and Prism (built by `cargo build`) for the client suites: `prism serve`
on the embedded backend; with PRISM_SDK_BACKEND=aws, `prism serve --backend aws` against the
emulator that AWS_ENDPOINT_URL names (its resources created by `prism-provision`); with
PRISM_SDK_BACKEND=lambda, the Lambda binaries under cargo-lambda over that emulator, started by
`prism-local-aws` exactly as `scripts/local-aws.sh` starts them.

The Python SDK suite uses `running_prism()` through its conftest; other clients' suites run as

    python tests/sdk/prism_launcher.py COMMAND...

which starts the same stack, runs COMMAND with PRISM_BASE_URL (the SDKs' base URL, ending in
/v1), PRISM_API_KEY, PRISM_MOCK_URL and PRISM_SDK_BACKEND set, stops the stack and exits with
COMMAND's status (the Node SDK suite: `node --test tests/node`)."""

import contextlib
import json
import os
import socket
import subprocess
import tempfile
import time
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PRISM_BIN_DIR", ROOT / "target" / "debug"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


BACKEND = os.environ.get("PRISM_SDK_BACKEND", "embedded")


def backend_env(workdir: Path) -> dict:
    """The environment every `prism` command of the session runs with."""
    if BACKEND != "aws":
        return {}
    assert os.environ.get("AWS_ENDPOINT_URL"), "PRISM_SDK_BACKEND=aws needs AWS_ENDPOINT_URL"
    out = subprocess.run(
        [BIN / "prism-provision", f"sdk-{os.getpid()}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


class Prism:
    def __init__(self, base: str, key: str, mock: str):
        self.base = base
        self.key = key
        self.mock = mock
        self.backend = BACKEND

    def get_json(self, path: str) -> dict:
        request = urllib.request.Request(
            self.base + path, headers={"Authorization": f"Bearer {self.key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["content-type"] == "application/json"
            return json.load(response)

    def upstream_hits(self, model: str) -> int:
        with urllib.request.urlopen(self.mock + "/_stats", timeout=5) as response:
            return json.load(response)["requests"].get(model, 0)


def start_lambda_stack(workdir: Path, config: Path):
    """`prism-local-aws` in the background; returns it with the base URL (without /v1) and key."""
    assert os.environ.get("AWS_ENDPOINT_URL"), "PRISM_SDK_BACKEND=lambda needs AWS_ENDPOINT_URL"
    stack = subprocess.Popen(
        [
            BIN / "prism-local-aws",
            "--prefix", f"sdk-fn-{os.getpid()}",
            "--config", config,
            "--port", "0",
            "--log-dir", workdir / "logs",
            "--rule-period", "2s",
            "--visibility", "30",
            "--binary-dir", BIN,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    printed = {}
    while "PRISM_API_KEY" not in printed:
        line = stack.stdout.readline()
        if not line:
            raise RuntimeError(f"prism-local-aws exited with {stack.wait()}")
        if "=" in line:
            name, value = line.strip().split("=", 1)
            printed[name] = value
    base = printed["PRISM_BASE_URL"]
    assert base.endswith("/v1"), base
    return stack, base[: -len("/v1")], printed["PRISM_API_KEY"]


def start_mock(workdir: Path):
    """The mock upstream on a free port and a config routing every model to it; returns both."""
    mock_port = free_port()
    mock = subprocess.Popen(
        [BIN / "prism-mock-upstream", "--listen", f"127.0.0.1:{mock_port}"],
        stdout=subprocess.DEVNULL,
    )
    config = workdir / "prism.toml"
    config.write_text(
        "[[providers]]\n"
        'name = "mock"\n'
        f'base_url = "http://127.0.0.1:{mock_port}/v1"\n'
        'models = ["*"]\n'
        # Small enough that batch output files take the AWS backend's redirect to S3.
        "[files]\nredirect_downloads_above = 1024\n"
        # gpt-4o-mini's list prices, as in the README: finished work shows its cost.
        '[[prices]]\nmodel = "gpt-4o-mini*"\ninput = "0.15"\ncached_input = "0.075"\noutput = "0.60"\n'
        'batch = { input = "0.075", output = "0.30" }\n'
    )
    wait_http(f"http://127.0.0.1:{mock_port}/_stats")
    return mock, f"http://127.0.0.1:{mock_port}", config


@contextlib.contextmanager
def running_prism() -> Iterator[Prism]:
    """The stack PRISM_SDK_BACKEND names, running until the block ends."""
    if BACKEND == "lambda":
        yield from lambda_prism()
        return
    for name in ("prism", "prism-mock-upstream") + (("prism-provision",) if BACKEND == "aws" else ()):
        assert (BIN / name).exists(), f"{BIN / name} is missing: run `cargo build` first"
    workdir = Path(tempfile.mkdtemp(prefix="prism-sdk-"))
    prism_port = free_port()
    mock, mock_url, config = start_mock(workdir)
    env = {**os.environ, **backend_env(workdir)}
    data = workdir / "data"
    key = subprocess.run(
        [BIN / "prism", "keys", "create", "--tenant", "sdk", "--data-dir", data],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    server = subprocess.Popen(
        [
            BIN / "prism", "serve",
            "--listen", f"127.0.0.1:{prism_port}",
            "--data-dir", data,
            "--config", config,
        ],
        env={**env, "PRISM_LOG": "warn"},
    )
    try:
        wait_http(f"http://127.0.0.1:{prism_port}/health")
        yield Prism(f"http://127.0.0.1:{prism_port}", key, mock_url)
    finally:
        server.terminate()
        mock.terminate()
        server.wait(timeout=30)
        mock.wait(timeout=10)


def lambda_prism():
    assert (BIN / "prism-local-aws").exists(), "prism-local-aws is missing: run `cargo build` first"
    workdir = Path(tempfile.mkdtemp(prefix="prism-sdk-lambda-"))
    mock, mock_url, config = start_mock(workdir)
    stack, base, key = start_lambda_stack(workdir, config)
    try:
        wait_http(f"{base}/health", timeout=60)
        yield Prism(base, key, mock_url)
    finally:
        stack.terminate()
        mock.terminate()
        stack.wait(timeout=60)
        mock.wait(timeout=10)


def main(command: list) -> int:
    if not command:
        print("usage: prism_launcher.py COMMAND...", file=sys.stderr)
        return 2
    with running_prism() as prism:
        env = {
            **os.environ,
            "PRISM_BASE_URL": prism.base + "/v1",
            "PRISM_API_KEY": prism.key,
            "PRISM_MOCK_URL": prism.mock,
            "PRISM_SDK_BACKEND": prism.backend,
        }
        return subprocess.run(command, env=env, cwd=ROOT).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

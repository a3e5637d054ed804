#!/usr/bin/env bash
# Prism's seven Lambda binaries on this machine, in one command: installs what it needs into
# .venv (the moto AWS emulator and cargo-lambda, pinned in tests/requirements.txt), builds the
# functions, starts the emulator on a free loopback port, creates the stack's resources from
# infra/template.yaml, and runs every function under cargo-lambda's runtime emulator with the
# environment the template gives it, plus local stand-ins for what AWS does between them (SQS
# event source mappings, the reconciler's schedule rule, EventBridge Scheduler deliveries).
#
# Once ready it prints `PRISM_BASE_URL=…/v1` and `PRISM_API_KEY=…`, then stays in the foreground
# until interrupted. Arguments go to `prism-local-aws` (see `--help`), e.g. `--config prism.toml`
# to route models to a provider of yours; without one, every model goes to the mock upstream.
# Nothing here reaches a real AWS account: the functions only ever see the emulator's endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
export PATH="$PWD/.venv/bin:$PATH"

cargo build --locked -p prism-lambda-local \
    -p api -p async-worker -p reconciler -p dead-letters \
    -p batch-planner -p batch-processor -p batch-finalizer

mkdir -p target
port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > target/local-aws-moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
# The emulator, with dummy credentials in a fixed region: what the functions get instead of a role.
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

target/debug/prism-local-aws --cargo-lambda "$PWD/.venv/bin/cargo-lambda" "$@"

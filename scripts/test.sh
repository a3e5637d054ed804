#!/usr/bin/env bash
# The whole test suite on a fresh machine. Installs the Python tools (the official OpenAI SDK,
# the moto AWS emulator, cfn-lint and SAM) in .venv, builds the workspace, starts the emulator on
# a free loopback port, then runs: every Rust suite (the end-to-end suites on embedded storage,
# the port contract suites on SQLite and on the emulator), the end-to-end suites again against
# `prism serve --backend aws` on the emulator, and once more against the seven Lambda binaries
# run locally under cargo-lambda (with Lambda sandboxes crashed mid-work), the SDK suite on all
# three, and the template checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# The emulator suites of prism-aws and prism-app are behind their `emulator` feature.
EMULATOR_FEATURES=prism-aws/emulator,prism-app/emulator
cargo build --workspace --all-targets --locked --features "$EMULATOR_FEATURES"

port=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
trap 'kill "$moto_pid" 2>/dev/null || true; wait "$moto_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    if .venv/bin/python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/')" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
# Only for the test processes: the emulator, with dummy credentials in a fixed region.
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_EC2_METADATA_DISABLED=true

cargo test --workspace --locked --features "$EMULATOR_FEATURES"
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked \
    --test sync_completions --test async_jobs --test scheduled --test lifecycle \
    --test files --test batches
PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q
PRISM_SDK_BACKEND=aws PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q

# The Lambda binaries themselves, under cargo-lambda's runtime emulator (`prism-lambda-local`).
export CARGO_LAMBDA="$PWD/.venv/bin/cargo-lambda"
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked \
    --test sync_completions --test async_jobs --test scheduled --test files --test batches
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test lambda_crashes -- --ignored
PRISM_SDK_BACKEND=lambda PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q
scripts/check-infra.sh

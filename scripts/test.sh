#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs the Python test client (the official OpenAI
# SDK) in .venv, builds the workspace, then runs the Rust suites and the SDK suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt

cargo build --workspace --all-targets --locked
cargo test --workspace --locked
PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q

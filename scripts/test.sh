#!/usr/bin/env bash
# The whole test suite on a fresh machine. Installs the Python tools (the official OpenAI SDK,
# the moto AWS emulator, cfn-lint and SAM) in .venv and the Node SDK suite's (node and npm from
# apt when missing, the SDK by `npm ci`) and the console's browser test's (Debian's chromium,
# puppeteer-core by `npm ci`), builds the workspace, starts the emulator on a free
# loopback port, then runs: every Rust suite (the end-to-end suites on embedded storage, the port
# contract suites on SQLite and on the emulator), the end-to-end suites again against
# `prism serve --backend aws` on the emulator, and once more against the eight Lambda binaries
# run locally under cargo-lambda (with Lambda sandboxes crashed mid-work), the Python and Node
# SDK suites on all three, Schemathesis against `prism serve` (embedded), and the template checks.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

source scripts/emulator.sh
install_python_tools
source scripts/node.sh
install_node_tools
source scripts/console.sh
install_console_tools

# The emulator suites of prism-aws and prism-app are behind their `emulator` feature.
EMULATOR_FEATURES=prism-aws/emulator,prism-app/emulator
cargo build --workspace --all-targets --locked --features "$EMULATOR_FEATURES"

# Only for the test processes: the emulator, with dummy credentials in a fixed region.
start_emulator target/moto.log
# The emulator wrapper answers a used ClientRequestToken as DynamoDB does.
.venv/bin/python scripts/check_moto_tokens.py

cargo test --workspace --locked --features "$EMULATOR_FEATURES"
# The web console in headless Chromium against a running batch (screenshots: target/console-screenshots).
cargo test -p prism-server --locked --test console -- --ignored
# `hardening` and the attack battery (`attacks`) run here too: `prism serve --backend aws` has
# the same HTTP layer as on embedded storage, over the emulator's store.
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked \
    --test sync_completions --test async_jobs --test scheduled --test lifecycle \
    --test recurring \
    --test recurring_runs \
    --test cli_batches \
    --test observability \
    --test files --test batches --test batch_crashes --test fault_matrix --test hardening \
    --test attacks --test cli_client --test uploads
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test endpoints
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test webhooks
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test console -- --include-ignored
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test usage_cost
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test responses
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test batch_modes
PRISM_TEST_BACKEND=aws cargo test -p prism-server --locked --test aws_faults -- --ignored
PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q
PRISM_SDK_BACKEND=aws PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q
# The official Node SDK (tests/node) under node's own test runner, against the same stacks.
PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python tests/sdk/prism_launcher.py node --test tests/node/*.test.mjs
PRISM_SDK_BACKEND=aws PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python tests/sdk/prism_launcher.py node --test tests/node/*.test.mjs
# Schemathesis against `prism serve` with its own /openapi.json: no 5xx, nothing undocumented.
scripts/schemathesis.sh

# The Lambda binaries themselves, under cargo-lambda's runtime emulator (`prism-lambda-local`).
export CARGO_LAMBDA="$PWD/.venv/bin/cargo-lambda"
# `hardening` is left out here: it tests `prism serve`'s own HTTP layer (read timeouts, body
# budget, connection cap), which the Lambda front replaces.
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked \
    --test sync_completions --test async_jobs --test scheduled --test files --test batches \
    --test cli_batches \
    --test attacks --test cli_client --test uploads
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test webhooks
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test recurring
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test recurring_runs
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test responses
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test endpoints
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test observability
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test lambda_crashes -- --ignored
PRISM_TEST_BACKEND=lambda cargo test -p prism-server --locked --test console -- --include-ignored
PRISM_SDK_BACKEND=lambda PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python -m pytest tests/sdk -q
PRISM_SDK_BACKEND=lambda PRISM_BIN_DIR="$PWD/target/debug" .venv/bin/python tests/sdk/prism_launcher.py node --test tests/node/*.test.mjs
scripts/check-infra.sh

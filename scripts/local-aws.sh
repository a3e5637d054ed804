#!/usr/bin/env bash
# Prism's eight Lambda binaries on this machine, in one command: installs what it needs into
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

source scripts/emulator.sh
install_python_tools
export PATH="$PWD/.venv/bin:$PATH"

cargo build --locked -p prism-lambda-local \
    -p api -p async-worker -p reconciler -p dead-letters \
    -p batch-planner -p batch-processor -p batch-finalizer -p webhooks

# What the functions get instead of a role and a region: the emulator and dummy credentials.
start_emulator target/local-aws-moto.log

target/debug/prism-local-aws --cargo-lambda "$PWD/.venv/bin/cargo-lambda" "$@"

#!/usr/bin/env bash
# Builds the eight Lambda functions with `sam build` (SAM's rust-cargolambda builder: release
# builds of the workspace's binaries into target/lambda/, artifacts in .aws-sam/build/) and prints
# how long it took. Installs the pinned tools into the repo's .venv when they are missing: SAM,
# cargo-lambda and zig must share one venv, because cargo-lambda finds zig as `python3 -m ziglang`
# and so needs that venv's python3 first on PATH.
#
#   scripts/sam-build.sh                      # arm64 (the template's default; needs the
#                                             # aarch64-unknown-linux-gnu Rust target)
#   PRISM_ARCH=x86_64 scripts/sam-build.sh    # x86_64, where that target is not available
#
# Extra arguments go to `sam build`. Deploy with the architecture you built for:
#   sam deploy --parameter-overrides Architecture=x86_64 ...
set -euo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
CARGO_LAMBDA_VERSION=1.9.2
ZIG_VERSION=0.17.1
ARCH="${PRISM_ARCH:-arm64}"

case "$ARCH" in
    arm64) RUST_TARGET=aarch64-unknown-linux-gnu ;;
    x86_64) RUST_TARGET=x86_64-unknown-linux-gnu ;;
    *)
        echo "PRISM_ARCH must be arm64 or x86_64, not '$ARCH'" >&2
        exit 2
        ;;
esac

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cargo-lambda ] || ! .venv/bin/python -c 'import ziglang' 2>/dev/null; then
    .venv/bin/pip install -q --disable-pip-version-check \
        "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION" \
        "cargo-lambda==$CARGO_LAMBDA_VERSION" "ziglang==$ZIG_VERSION"
fi
export PATH="$PWD/.venv/bin:$PATH"

# Fail early and clearly rather than deep inside cargo: the standard library of the target must
# be installed (rustup cannot always download it, e.g. offline).
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$RUST_TARGET"; then
    if ! rustup target add "$RUST_TARGET"; then
        echo "The Rust target $RUST_TARGET is not installed and could not be added;" \
            "build for the other architecture with PRISM_ARCH=x86_64 (or arm64)." >&2
        exit 1
    fi
fi

# samconfig.toml names the template and enables the beta builder; --beta-features is repeated so
# the build never stops at SAM's prompt. The Architecture parameter feeds Globals' Architectures,
# which is what SAM builds for.
start=$(date +%s)
sam build --beta-features --parameter-overrides "Architecture=$ARCH" "$@"
elapsed=$(($(date +%s) - start))
echo "sam build ($ARCH) took ${elapsed} s"

#!/usr/bin/env bash
# Schemathesis against `prism serve` (embedded), driven by the OpenAPI document it serves at
# /openapi.json and a key: a bounded, seeded, stateless run (examples, coverage and fuzzing phases,
# at most SCHEMATHESIS_EXAMPLES cases per operation) that fails on any 5xx, any status code, content
# type, header or body the document does not describe, and any crash (a refused connection).
#
#   scripts/schemathesis.sh            # builds nothing: needs target/debug/{prism,prism-mock-upstream}
#
# One worker: Hypothesis's example generation is not thread-safe (its lambda-description cache
# raced between two workers and failed a CI run with a FlakyFailure while building POST /v1/uploads
# examples, before any request was sent); the run takes seconds either way.
#
# Schemathesis pins its own dependencies (hypothesis, jsonschema, ...), so it gets its own venv,
# .venv/schemathesis, as checkov does (scripts/check-infra.sh); SCHEMATHESIS_VENV moves it.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${SCHEMATHESIS_VENV:-.venv/schemathesis}"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"

if [ -z "${PRISM_BASE_URL:-}" ]; then
    if [ "$("$VENV/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ]; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    fi
    # The launcher starts the mock upstream and `prism serve` (its log kept in its temp dir), then
    # runs this script again with PRISM_BASE_URL and PRISM_API_KEY set.
    exec env PRISM_BIN_DIR="${PRISM_BIN_DIR:-$PWD/target/debug}" SCHEMATHESIS_VENV="$VENV" \
        .venv/bin/python tests/sdk/prism_launcher.py "$0"
fi

origin="${PRISM_BASE_URL%/v1}"
report="${SCHEMATHESIS_REPORT:-target/schemathesis}"
mkdir -p "$report"
"$VENV/bin/schemathesis" run "$origin/openapi.json" \
    --header "Authorization: Bearer $PRISM_API_KEY" \
    --phases examples,coverage,fuzzing \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
    --max-examples "$EXAMPLES" \
    --seed "${SCHEMATHESIS_SEED:-17}" \
    --workers 1 \
    --request-timeout 20 \
    --generation-database none \
    --report "${SCHEMATHESIS_REPORTS:-junit}" --report-dir "$report" \
    --no-color

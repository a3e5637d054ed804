#!/usr/bin/env bash
# Lints the SAM template offline: cfn-lint, then `sam validate --lint` (SAM's transform plus
# cfn-lint on the transformed template). Needs no AWS credentials; the region only picks the
# resource specification. Installs the pinned tools into the repo's .venv when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
TEMPLATE=infra/template.yaml
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cfn-lint ]; then
    .venv/bin/pip install -q --disable-pip-version-check \
        "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi

echo "== cfn-lint $TEMPLATE"
.venv/bin/cfn-lint "$TEMPLATE"

echo "== sam validate --lint"
.venv/bin/sam validate --lint --template "$TEMPLATE" --region us-east-1

# The sample events are unit-test fixtures: they must at least be valid JSON.
echo "== infra/events/*.json"
for event in infra/events/*.json; do
    .venv/bin/python -m json.tool "$event" >/dev/null
done

echo "infra checks passed"

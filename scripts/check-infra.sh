#!/usr/bin/env bash
# Lints the SAM template offline: cfn-lint, then `sam validate --lint` (SAM's transform plus
# cfn-lint on the transformed template), then checkov's security checks on the template as
# written and on its SAM transform. Needs no AWS credentials; the region only picks the resource
# specification. Installs the pinned tools into the repo's .venv when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

export SAM_CLI_TELEMETRY=0
TEMPLATE=infra/template.yaml
SAM_VERSION=1.170.0
CFN_LINT_VERSION=1.58.0
# checkov pins boto3 exactly (3.3.30: boto3==1.35.49) and aws-sam-cli does too (1.170.0:
# boto3==1.43.108), so the two cannot share an environment: checkov gets its own venv inside
# .venv (ignored by git like the rest of it). Not in tests/requirements.txt for the same reason.
CHECKOV_VERSION=3.3.30
CHECKOV_VENV=.venv/checkov

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
if [ ! -x .venv/bin/sam ] || [ ! -x .venv/bin/cfn-lint ]; then
    .venv/bin/pip install -q --disable-pip-version-check \
        "aws-sam-cli==$SAM_VERSION" "cfn-lint==$CFN_LINT_VERSION"
fi
if [ "$("$CHECKOV_VENV/bin/checkov" --version 2>/dev/null)" != "$CHECKOV_VERSION" ]; then
    [ -x "$CHECKOV_VENV/bin/python" ] || python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
fi

echo "== cfn-lint $TEMPLATE"
.venv/bin/cfn-lint "$TEMPLATE"

echo "== sam validate --lint"
.venv/bin/sam validate --lint --template "$TEMPLATE" --region us-east-1

# checkov reads AWS::Serverless::* itself (with Globals merged in), and its suppressions are the
# `Metadata: checkov: skip:` entries of the template's resources, each with its reason. The
# SAM-transformed template adds what SAM generates: the functions' roles (with their policies),
# the invoke permissions, the stage. Both must pass: any failure not skipped fails this script.
# --skip-download: no calls to Prisma Cloud (no API key; offline).
checkov() {
    "$CHECKOV_VENV/bin/checkov" --framework cloudformation --compact --quiet --skip-download \
        -f "$1"
}

echo "== checkov $TEMPLATE"
checkov "$TEMPLATE"

echo "== checkov (SAM-transformed $TEMPLATE)"
transformed="$(mktemp -d)"
trap 'rm -rf "$transformed"' EXIT
# SAM's own translator (in .venv with aws-sam-cli), offline: no parameter values (SAM leaves the
# references in place), no managed policy lookups (the template names none by name).
AWS_DEFAULT_REGION=us-east-1 .venv/bin/python - "$TEMPLATE" "$transformed/template.json" <<'EOF'
import json
import logging
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

logging.getLogger("samtranslator").setLevel(logging.ERROR)  # feature-toggle chatter
source, target = sys.argv[1], sys.argv[2]
with open(source) as f:
    template = yaml_parse(f.read())
# A suppression without its reason is not one.
for name, resource in template["Resources"].items():
    for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
        if not str(skip.get("comment") or "").strip():
            sys.exit(f"{source}: {name} skips {skip.get('id')} without a comment")
# `sam package` would point CodeUri at S3; the transform insists on that form.
template["Globals"]["Function"]["CodeUri"] = "s3://bucket/key"
out = transform(template, {}, lambda: {})
# SAM keeps a function's Metadata (its suppressions) on the generated function, but not an
# Api's on the stage it generates: carry those over.
for resource in out["Resources"].values():
    if resource["Type"] == "AWS::ApiGateway::Stage":
        api = resource["Properties"]["RestApiId"].get("Ref")
        skips = template["Resources"].get(api, {}).get("Metadata", {}).get("checkov")
        if skips:
            resource.setdefault("Metadata", {})["checkov"] = skips
with open(target, "w") as f:
    json.dump(out, f, indent=1)
EOF
checkov "$transformed/template.json"

# The sample events are unit-test fixtures: they must at least be valid JSON.
echo "== infra/events/*.json"
for event in infra/events/*.json; do
    .venv/bin/python -m json.tool "$event" >/dev/null
done

echo "infra checks passed"

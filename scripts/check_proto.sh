#!/usr/bin/env bash
# Lint, format-check and breaking-change-check the gRPC API, and check that the
# committed generated Python code is up to date. Called by CI; safe to run
# locally. Offline once buf is installed.
#
#   scripts/check_proto.sh
#
# buf is installed into the repo-local, git-ignored .tools/ (npm) if missing.
# Environment: BUF_VERSION (default 1.75.0), PYTHON (default .venv/bin/python,
# else python3).
set -euo pipefail

cd "$(dirname "$0")/.."

BUF_VERSION="${BUF_VERSION:-1.75.0}"
BUF=".tools/node_modules/.bin/buf"

if [ ! -x "$BUF" ]; then
    echo "==> installing buf ${BUF_VERSION} into .tools/"
    npm install --no-save --no-audit --no-fund --prefix .tools "@bufbuild/buf@${BUF_VERSION}"
fi

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

echo "==> buf $("$BUF" --version)"
echo "==> buf lint"
"$BUF" lint
echo "==> buf format --diff --exit-code"
"$BUF" format --diff --exit-code
echo "==> buf breaking --against tests/fixtures/proto_v0 (first released proto)"
"$BUF" breaking --against tests/fixtures/proto_v0
echo "==> generated code is up to date"
"$PYTHON" scripts/gen_proto.py --check
echo "==> proto checks passed"

#!/usr/bin/env bash
# The test run of `make test` and CI: lint, then pytest on both cores.
# pytest's exit code 5 (no tests collected) is a failure here, never a silent pass.
set -uo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=2 TF_ENABLE_ONEDNN_OPTS=0
.venv/bin/ruff check edgeq tests benchmarks || exit 1
.venv/bin/python -m pytest -n 2 --durations=15 "$@"
code=$?
if [ "$code" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$code"

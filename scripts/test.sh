#!/usr/bin/env bash
# Set up everything (system packages, .venv) and run the whole test suite: lint, unit,
# integration (against the LINSTOR emulator) and end-to-end (real loop devices, mounts
# and a private Docker daemon). Needs root for the integration and end-to-end layers;
# without root those skip with a reason, and under CI=true they fail instead.
#
#   sudo scripts/test.sh              # everything
#   sudo scripts/test.sh tests/unit   # any pytest arguments narrow the run
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh

echo "== ruff"
.venv/bin/ruff check --no-cache .
.venv/bin/ruff format --check . >/dev/null || {
    .venv/bin/ruff format --check .
    exit 1
}

echo "== pytest"
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(tests)
set +e
.venv/bin/python -m pytest -p no:cacheprovider -rs "${args[@]}"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "pytest collected no tests: that is a failure here" >&2
    exit 1
fi
exit "$rc"

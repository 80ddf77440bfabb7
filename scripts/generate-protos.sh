#!/usr/bin/env bash
# Regenerate csi/generated/ from protos/csi.proto (needs the test extras: grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-.venv/bin/python}" -m csi.protogen "$@"

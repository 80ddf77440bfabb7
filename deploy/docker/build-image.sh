#!/usr/bin/env bash
# Build the plugin image linstor-volume-plugin:<version from pyproject.toml> without a
# registry: a rootfs from this machine's Python, the pinned packages (constraints.txt),
# the project's wheel and the Debian packages' filesystem tools, then `docker import`
# (see build_image.py). Kubernetes (deploy/kubernetes) and Nomad (deploy/nomad) run it.
# Usage: deploy/docker/build-image.sh [--tag NAME:TAG] [--rootfs DIR]
# Then push it where the cluster pulls from, e.g.:
#   docker tag linstor-volume-plugin:0.1.0 registry.example.com/linstor-volume-plugin:0.1.0
#   docker push registry.example.com/linstor-volume-plugin:0.1.0
# Needs: scripts/bootstrap.sh run first (it installs the tools and the .venv); root for the
# chroot smoke test; DOCKER_HOST selects the daemon as for the docker CLI.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}

if [ ! -x "$python" ]; then
    echo "build-image: $python not found; run scripts/bootstrap.sh first" >&2
    exit 1
fi
exec "$python" "$here/build_image.py" "$@"

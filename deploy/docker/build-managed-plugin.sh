#!/usr/bin/env bash
# Build the managed Docker plugin directory (config.json + rootfs/) without a registry:
# the rootfs is assembled from this machine's Python, the project's virtual environment
# and the host's filesystem tools (see assemble_rootfs.py). Then register it with:
#   docker plugin create linstor <OUTDIR>
#   docker plugin set linstor LS_CONTROLLERS=http://controller:3370
#   docker plugin enable linstor
# Usage: deploy/docker/build-managed-plugin.sh [OUTDIR]   (default: build/managed-plugin)
# Needs: scripts/bootstrap.sh run first (it installs the tools and the .venv).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$repo/build/managed-plugin}
python=${PYTHON:-$repo/.venv/bin/python}

if [ ! -x "$python" ]; then
    echo "build-managed-plugin: $python not found; run scripts/bootstrap.sh first" >&2
    exit 1
fi
if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
    echo "build-managed-plugin: $out exists and is not empty; remove it or choose another directory" >&2
    exit 1
fi
mkdir -p "$out"
"$python" "$here/assemble_rootfs.py" "$out/rootfs"
cp "$here/plugin/config.json" "$out/config.json"
# The plugin must start from the rootfs alone: a smoke test with the copied interpreter.
if command -v chroot >/dev/null && [ "$(id -u)" -eq 0 ]; then
    chroot "$out/rootfs" /usr/local/bin/linstor-docker-volume --help >/dev/null \
        || { echo "build-managed-plugin: the rootfs cannot import the plugin" >&2; exit 1; }
fi
echo "managed plugin ready in $out ($(du -sh "$out" | cut -f1))"

#!/usr/bin/env bash
# Install everything the plugin stack and its tests need on a fresh Debian/Ubuntu machine:
# system packages (block-device and filesystem tools, Docker, busybox for the test image)
# and a Python virtual environment in .venv with the project and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES=(util-linux mount e2fsprogs xfsprogs btrfs-progs kmod procps curl openssl systemd docker.io runc busybox-static ca-certificates)
PYTHON=${PYTHON:-python3}

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "bootstrap: these system packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    echo "bootstrap: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.installed-$(cat pyproject.toml deploy/docker/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    # The runtime packages at the versions the plugin image pins (deploy/docker/constraints.txt).
    .venv/bin/python -m pip install -q -e '.[test]' -c deploy/docker/constraints.txt
    rm -f .venv/.installed-*
    touch "$stamp"
fi

#!/usr/bin/env bash
# Set up everything and run the whole plugin stack on one machine, on the embedded LINSTOR
# controller emulator:
#   - linstor-emulator: LINSTOR REST API on http://127.0.0.1:3370, local node + 2 virtual
#     nodes, real loop-device storage under .demo/emulator;
#   - linstor-csi (controller + node) on unix://.demo/csi/csi.sock, staging and publishing
#     only below .demo/csi-volumes;
#   - linstor-docker-volume on /run/docker/plugins/linstor.sock (driver name "linstor");
#   - a Docker daemon if none is running, and a "busybox" image to try volumes with.
# Ctrl-C (or SIGTERM) stops everything cleanly; state survives for the next run.
#
#   sudo scripts/run-demo.sh
#   sudo env DEMO_DIR=/tmp/demo EMULATOR_PORT=3371 EMULATOR_NODES=node-b scripts/run-demo.sh
# (state and logs under DEMO_DIR, default .demo; the emulator's port; its virtual nodes)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
    echo "run-demo: needs root (loop devices, mkfs, mount, the Docker plugin socket)" >&2
    exit 1
fi
scripts/bootstrap.sh

DEMO=${DEMO_DIR:-$PWD/.demo}
PORT=${EMULATOR_PORT:-3370}
NODES=${EMULATOR_NODES:-node-b,node-c}
NODE=$(hostname)
mkdir -p "$DEMO/emulator" "$DEMO/csi" "$DEMO/csi-volumes" "$DEMO/logs" "$DEMO/docker-mounts"
export LS_CONTROLLERS="http://127.0.0.1:$PORT"
pids=()

stop_all() {
    local rc=$1
    trap - INT TERM EXIT
    echo
    echo "run-demo: stopping"
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill -TERM "${pids[$i]}" 2>/dev/null || true
        wait "${pids[$i]}" 2>/dev/null || true
    done
    exit "$rc"
}
trap 'stop_all 0' INT TERM
trap 'stop_all $?' EXIT

wait_for() { # what, command...
    local what=$1
    shift
    for _ in $(seq 1 100); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "run-demo: $what did not come up; see $DEMO/logs" >&2
    exit 1
}

.venv/bin/linstor-emulator serve --state-dir "$DEMO/emulator" --host 127.0.0.1 --port "$PORT" \
    --local-node "$NODE" --nodes "$NODES" >"$DEMO/logs/emulator.log" 2>&1 &
pids+=($!)
wait_for "the emulator" curl -fsS "$LS_CONTROLLERS/v1/controller/version"

.venv/bin/linstor-csi --endpoint "unix://$DEMO/csi/csi.sock" --node "$NODE" --mode all \
    --path-root "$DEMO/csi-volumes" >"$DEMO/logs/csi.log" 2>&1 &
pids+=($!)
wait_for "the CSI driver" test -S "$DEMO/csi/csi.sock"

if ! docker info >/dev/null 2>&1; then
    mkdir -p "$DEMO/docker"
    dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
        --data-root "$DEMO/docker" >"$DEMO/logs/dockerd.log" 2>&1 &
    pids+=($!)
    wait_for "dockerd" docker info
fi

.venv/bin/linstor-docker-volume --socket /run/docker/plugins/linstor.sock --node "$NODE" \
    --mount-root "$DEMO/docker-mounts" >"$DEMO/logs/docker-plugin.log" 2>&1 &
pids+=($!)
wait_for "the Docker plugin" test -S /run/docker/plugins/linstor.sock

if ! docker image inspect busybox >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in sh ls cat echo mkdir rm sleep df; do ln -s busybox "$rootfs/bin/$applet"; done
    tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - busybox:latest >/dev/null
    rm -rf "$rootfs"
fi

cat <<INFO

The LINSTOR plugin stack is running (logs in $DEMO/logs):
  LINSTOR emulator   $LS_CONTROLLERS   nodes: $NODE (local), ${NODES//,/, }
  CSI driver         unix://$DEMO/csi/csi.sock   (node $NODE, controller + node;
                     staging and target paths below $DEMO/csi-volumes)
  Docker plugin      /run/docker/plugins/linstor.sock   (driver "linstor")

Try it from another shell:
  docker volume create -d linstor -o size=1G -o fs=xfs -o replicas=2 demo
  docker volume inspect demo
  docker run --rm -v demo:/data busybox sh -c 'echo hello > /data/hello'
  docker run --rm -v demo:/data busybox cat /data/hello
  docker volume rm demo
  curl -s $LS_CONTROLLERS/v1/view/resources | python3 -m json.tool
  sudo .venv/bin/linstor-plugin-doctor --controllers $LS_CONTROLLERS --csi-endpoint unix://$DEMO/csi/csi.sock

Press Ctrl-C to stop.
INFO
wait -n "${pids[@]}" || true
echo "run-demo: a component exited; see $DEMO/logs" >&2
exit 1

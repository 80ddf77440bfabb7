#!/usr/bin/env bash
# Set up everything and run the whole plugin stack on one machine, on the embedded LINSTOR
# controller emulator:
#   - linstor-emulator: LINSTOR REST API on http://127.0.0.1:3370, local node + 2 virtual
#     nodes, real loop-device storage under .demo/emulator;
#   - linstor-csi (controller + node) on unix://.demo/csi/csi.sock, staging and publishing
#     only below .demo/csi-volumes;
#   - linstor-docker-volume on /run/docker/plugins/linstor.sock (driver name "linstor");
#   - a Docker daemon if none is running, and a "busybox" image to try volumes with.
# Ctrl-C (or SIGTERM) stops everything cleanly, Docker first, so containers that use a
# volume release it while the plugin still runs; state survives for the next run.
#
#   sudo scripts/run-demo.sh [--dev-dir DIR] [--plugin-socket PATH]
#   sudo env DEMO_DIR=/tmp/demo EMULATOR_PORT=3371 EMULATOR_NODES=node-b scripts/run-demo.sh
#
#   --dev-dir DIR        where the emulator makes its drbd<minor> device nodes (env
#                        DEMO_DEV_DIR; default DEMO_DIR/emulator/dev). Use /dev to try the
#                        managed Docker plugin against the demo: it sees only the host's /dev.
#   --plugin-socket PATH the Docker plugin's socket (env DEMO_PLUGIN_SOCKET; default
#                        /run/docker/plugins/linstor.sock). Docker looks for plugins in
#                        /run/docker/plugins and names the driver after the file:
#                        /run/docker/plugins/linstor-demo.sock is driver "linstor-demo".
#   DEMO_DIR             state and logs (default .demo); EMULATOR_PORT the emulator's port;
#                        EMULATOR_NODES its virtual nodes; DOCKER_HOST the Docker daemon to
#                        use, or where to start one (default unix:///var/run/docker.sock).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'
}

DEV_DIR=${DEMO_DEV_DIR:-}
PLUGIN_SOCKET=${DEMO_PLUGIN_SOCKET:-/run/docker/plugins/linstor.sock}
while [ $# -gt 0 ]; do
    case $1 in
    --dev-dir) DEV_DIR=${2:?run-demo: --dev-dir needs a directory}; shift 2 ;;
    --dev-dir=*) DEV_DIR=${1#*=}; shift ;;
    --plugin-socket) PLUGIN_SOCKET=${2:?run-demo: --plugin-socket needs a path}; shift 2 ;;
    --plugin-socket=*) PLUGIN_SOCKET=${1#*=}; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "run-demo: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $PLUGIN_SOCKET in
/*.sock) ;;
*) echo "run-demo: --plugin-socket must be an absolute path ending in .sock, not $PLUGIN_SOCKET" >&2; exit 2 ;;
esac
DRIVER=$(basename "$PLUGIN_SOCKET" .sock)

if [ "$(id -u)" -ne 0 ]; then
    echo "run-demo: needs root (loop devices, mkfs, mount, the Docker plugin socket)" >&2
    exit 1
fi
scripts/bootstrap.sh

DEMO=${DEMO_DIR:-$PWD/.demo}
mkdir -p "$DEMO"
DEMO=$(cd "$DEMO" && pwd)
PORT=${EMULATOR_PORT:-3370}
NODES=${EMULATOR_NODES:-node-b,node-c}
NODE=$(hostname)
DEV_DIR=${DEV_DIR:-$DEMO/emulator/dev}
mkdir -p "$DEMO/emulator" "$DEMO/csi" "$DEMO/csi-volumes" "$DEMO/logs" "$DEMO/docker-mounts" "$DEV_DIR"
mkdir -p "$(dirname "$PLUGIN_SOCKET")"
export LS_CONTROLLERS="http://127.0.0.1:$PORT"
emulator_pid="" csi_pid="" plugin_pid="" dockerd_pid=""

# Each component runs in a session of its own (setsid), so a Ctrl-C in this terminal
# reaches only this script, which then stops them in an order that loses nothing.
stop() { # name pid
    [ -n "$2" ] || return 0
    echo "run-demo: stopping $1"
    kill -TERM "$2" 2>/dev/null || true
    wait "$2" 2>/dev/null || true
}

stop_containers_using_volumes() {
    # A Docker daemon this script did not start keeps running: stop the containers that use
    # this plugin's volumes while the plugin can still unmount them.
    local volumes ids=()
    volumes=$(docker volume ls -q --filter "driver=$DRIVER" 2>/dev/null) || return 0
    for volume in $volumes; do
        mapfile -t -O "${#ids[@]}" ids < <(docker ps -q --filter "volume=$volume")
    done
    if [ ${#ids[@]} -gt 0 ]; then
        echo "run-demo: stopping the containers that use $DRIVER volumes: ${ids[*]}"
        docker stop "${ids[@]}" >/dev/null || true
    fi
}

stop_all() {
    local rc=$1
    trap - INT TERM EXIT
    echo
    echo "run-demo: stopping"
    # Docker first: it stops its containers and unmounts their volumes through the plugin.
    if [ -n "$dockerd_pid" ]; then
        stop dockerd "$dockerd_pid"
    elif [ -n "$plugin_pid" ]; then
        stop_containers_using_volumes
    fi
    stop "the Docker plugin" "$plugin_pid"
    stop "the CSI driver" "$csi_pid"
    stop "the emulator" "$emulator_pid"
    exit "$rc"
}
trap 'stop_all 0' INT TERM
trap 'stop_all $?' EXIT

wait_for() { # what, command...
    local what=$1
    shift
    for _ in $(seq 1 150); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "run-demo: $what did not come up; see $DEMO/logs" >&2
    exit 1
}

setsid .venv/bin/linstor-emulator serve --state-dir "$DEMO/emulator" --host 127.0.0.1 --port "$PORT" \
    --local-node "$NODE" --nodes "$NODES" --dev-dir "$DEV_DIR" >"$DEMO/logs/emulator.log" 2>&1 &
emulator_pid=$!
wait_for "the emulator" curl -fsS "$LS_CONTROLLERS/v1/controller/version"

setsid .venv/bin/linstor-csi --endpoint "unix://$DEMO/csi/csi.sock" --node "$NODE" --mode all \
    --path-root "$DEMO/csi-volumes" >"$DEMO/logs/csi.log" 2>&1 &
csi_pid=$!
wait_for "the CSI driver" test -S "$DEMO/csi/csi.sock"

# The plugin before Docker: a starting dockerd asks the plugin about every volume it knows,
# and waits for a plugin that is not there yet.
setsid .venv/bin/linstor-docker-volume --socket "$PLUGIN_SOCKET" --node "$NODE" \
    --mount-root "$DEMO/docker-mounts" >"$DEMO/logs/docker-plugin.log" 2>&1 &
plugin_pid=$!
wait_for "the Docker plugin" test -S "$PLUGIN_SOCKET"

if ! docker info >/dev/null 2>&1; then
    mkdir -p "$DEMO/docker" "$DEMO/docker-exec"
    setsid dockerd --iptables=false --ip6tables=false --bridge=none --storage-driver=vfs \
        --data-root "$DEMO/docker" --exec-root "$DEMO/docker-exec" --pidfile "$DEMO/docker.pid" \
        --host "${DOCKER_HOST:-unix:///var/run/docker.sock}" >"$DEMO/logs/dockerd.log" 2>&1 &
    dockerd_pid=$!
    wait_for "dockerd" docker info
fi

if ! docker image inspect busybox >/dev/null 2>&1; then
    rootfs=$(mktemp -d)
    mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/data"
    cp /bin/busybox "$rootfs/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
    done
    tar -C "$rootfs" -c . | docker import -c 'ENV PATH=/bin' -c 'CMD ["/bin/sh"]' - busybox:latest >/dev/null
    rm -rf "$rootfs"
fi

cat <<INFO

The LINSTOR plugin stack is running (logs in $DEMO/logs):
  LINSTOR emulator   $LS_CONTROLLERS   nodes: $NODE (local), ${NODES//,/, }
                     device nodes in $DEV_DIR
  CSI driver         unix://$DEMO/csi/csi.sock   (node $NODE, controller + node;
                     staging and target paths below $DEMO/csi-volumes)
  Docker plugin      $PLUGIN_SOCKET   (driver "$DRIVER")

Try it from another shell:
  docker volume create -d $DRIVER -o size=1G -o fs=xfs -o replicas=2 demo
  docker volume inspect demo
  docker run --rm -v demo:/data busybox sh -c 'echo hello > /data/hello'
  docker run --rm -v demo:/data busybox cat /data/hello
  docker volume rm demo
  curl -s $LS_CONTROLLERS/v1/view/resources | python3 -m json.tool
  sudo .venv/bin/linstor-plugin-doctor --controllers $LS_CONTROLLERS --csi-endpoint unix://$DEMO/csi/csi.sock --docker-socket $PLUGIN_SOCKET

Press Ctrl-C to stop.
INFO
set +e
wait -n $emulator_pid $csi_pid $plugin_pid $dockerd_pid
echo "run-demo: a component exited; see $DEMO/logs" >&2
exit 1

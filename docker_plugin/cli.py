"""``linstor-docker-volume``: the Docker volume plugin daemon.

Start-up order matters: read the configuration (local, fails fast with a clear
message), bind the socket (Docker must find it at once), build the LINSTOR client
without contacting the controller, reconcile the persisted mount counts with the mount
table (local only), then serve. A controller that is down at start only makes the calls
that need it fail with a clear ``Err`` until it is back. The background check starts with
the server: it releases mount counts no container holds any more and finishes detaches a
controller outage left pending.
"""

from __future__ import annotations

import argparse
import faulthandler
import logging
import os
import signal
import stat
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from plugin.allocator import tune_malloc
from plugin.startup import collector_paused

with collector_paused():  # most of the start-up time: see plugin.startup
    from docker_plugin.app import create_app
    from docker_plugin.dirs import make_dirs
    from docker_plugin.driver import DockerVolumeDriver
    from docker_plugin.refcounts import MountStore
    from docker_plugin.server import DEFAULT_THREADS, SocketInUse, open_listen_socket, serve
    from docker_plugin.settings import DEFAULT_CONFIG_FILE, load_docker_config
    from docker_plugin.staging import DEFAULT_CHECK_INTERVAL, DEFAULT_RELEASE_DELAY, DEFAULT_STALE_GRACE
    from plugin import errors, progress
    from plugin.health import Reachability, controller_reachable
    from plugin.linstor.client import LinstorClient
    from plugin.node.ops import NodeOps
    from plugin.observability import setup_logging, start_metrics_server
    from plugin.params.docker import parse_docker_options
    from plugin.version import add_version_flag
    from plugin.volumes.service import VolumeService

log = logging.getLogger("docker_plugin")

DEFAULT_SOCKET = "/run/docker/plugins/linstor.sock"
# The Go plugin's root; also the managed plugin's propagatedMount, so one default fits both modes.
DEFAULT_MOUNT_ROOT = "/var/lib/docker-volumes/linstor"
STATE_FILE_NAME = ".linstor-docker-volume-mounts.json"
MOUNT_ROOT_MODE = 0o700


def build_parser() -> argparse.ArgumentParser:
    env = os.environ
    p = argparse.ArgumentParser(
        prog="linstor-docker-volume",
        description="Docker volume plugin for LINSTOR: serves Docker's VolumeDriver API on a unix socket.",
    )
    p.add_argument(
        "--socket",
        default=env.get("LS_DOCKER_SOCKET", DEFAULT_SOCKET),
        help="unix socket Docker connects to; its file name is the driver name (default: %(default)s)",
    )
    p.add_argument(
        "--mount-root",
        default=env.get("LS_DOCKER_MOUNT_ROOT", DEFAULT_MOUNT_ROOT),
        help="directory under which volumes are mounted, one directory per volume (default: %(default)s)",
    )
    p.add_argument(
        "--state-file",
        default=env.get("LS_DOCKER_STATE_FILE"),
        help=f"where mount counts are kept (default: <mount-root>/{STATE_FILE_NAME})",
    )
    p.add_argument(
        "--config-file",
        default=env.get("LS_DOCKER_CONFIG_FILE", DEFAULT_CONFIG_FILE),
        help="ini file with a [global] section: controllers and -o defaults (default: %(default)s)",
    )
    p.add_argument("--controllers", help="LINSTOR controllers, comma separated (overrides LS_CONTROLLERS)")
    p.add_argument("--node", help="this node's LINSTOR node name (default: LS_NODE_NAME or the host name)")
    p.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="request threads (default: %(default)s)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        default=int(env.get("LS_DOCKER_METRICS_PORT", "0") or 0),
        help="serve Prometheus metrics on this TCP port; 0 turns them off (default: %(default)s)",
    )
    p.add_argument(
        "--metrics-address", default="0.0.0.0", help="address for the metrics port (default: %(default)s)"
    )
    # the earlier spelling, still accepted; --metrics-address is the one both daemons document
    p.add_argument("--metrics-addr", dest="metrics_address", help=argparse.SUPPRESS)
    add_version_flag(p)
    p.add_argument(
        "--log-level",
        default=env.get("LS_DOCKER_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="(default: %(default)s)",
    )
    p.add_argument(
        "--release-delay",
        type=float,
        default=float(env.get("LS_DOCKER_RELEASE_DELAY", DEFAULT_RELEASE_DELAY) or 0),
        help="seconds a volume stays staged after its last Unmount, so the Mount Docker sends right "
        "after its pre-start Unmount reuses it; 0 releases at once (default: %(default)s)",
    )
    p.add_argument(
        "--check-interval",
        type=float,
        default=float(env.get("LS_DOCKER_CHECK_INTERVAL", DEFAULT_CHECK_INTERVAL) or 0),
        help="seconds between background checks, which release mount counts no container holds "
        "any more and retry detaches a controller outage left pending; 0 checks only at start "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--stale-grace",
        type=float,
        default=float(env.get("LS_DOCKER_STALE_GRACE", DEFAULT_STALE_GRACE) or 0),
        help="seconds after a Mount before its count may be released as unused: a container "
        "starting up does not show its use yet (default: %(default)s)",
    )
    p.add_argument("--log-format", default="json", choices=["json", "text"], help="(default: %(default)s)")
    p.add_argument(
        "--progress-interval",
        type=float,
        default=float(env.get("LS_DOCKER_PROGRESS_INTERVAL", progress.DEFAULT_INTERVAL) or 0),
        help="seconds between the log lines of a long operation (attach, mkfs, clone) still under way "
        "(default: %(default)s)",
    )
    return p


def _fail(message: str) -> int:
    log.error(message)
    print(f"linstor-docker-volume: {message}", file=sys.stderr)
    return 2


def ensure_mount_root(root: Path) -> None:
    """Create the mount root 0700 (missing parents 0755) whatever the umask.

    An existing root keeps its mode (dockerd makes a managed plugin's propagatedMount
    0710) unless others may write to it; then it is tightened to 0700.
    """
    make_dirs(root.parent, 0o755)
    try:
        root.mkdir(mode=MOUNT_ROOT_MODE)
    except FileExistsError:
        if not root.is_dir():
            raise NotADirectoryError(f"the mount root {root} exists and is not a directory") from None
        mode = stat.S_IMODE(os.stat(root).st_mode)
        if not mode & 0o022:
            return
        log.warning("mount root %s was writable by others (mode %o); set to %o", root, mode, MOUNT_ROOT_MODE)
    os.chmod(root, MOUNT_ROOT_MODE)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()  # before any thread: see plugin.allocator
    setup_logging(args.log_level, json_output=args.log_format == "json")
    # `kill -USR1 <pid>` writes every thread's stack to stderr: for operators facing a stuck call.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if args.threads < 1:
        return _fail("--threads must be at least 1")
    if args.check_interval < 0 or args.stale_grace < 0:
        return _fail("--check-interval and --stale-grace must not be negative")
    if args.progress_interval <= 0:
        return _fail("--progress-interval must be greater than zero")
    progress.set_interval(args.progress_interval)
    try:
        config = load_docker_config(
            {"controllers": args.controllers, "node_name": args.node}, config_file=args.config_file or None
        )
        parse_docker_options(None, config.option_defaults)  # bad defaults fail now, not at each Create
    except errors.VolumeError as exc:
        return _fail(f"bad configuration: {exc}")

    try:
        listen = open_listen_socket(args.socket)
    except (SocketInUse, OSError) as exc:
        return _fail(f"cannot listen on {args.socket}: {exc}")

    mount_root = Path(args.mount_root)
    state_file = Path(args.state_file) if args.state_file else mount_root / STATE_FILE_NAME
    try:
        ensure_mount_root(mount_root)
        client = LinstorClient(config)
        # A "no" is not reused: /health flips at the first call after LINSTOR answers.
        reachable = Reachability(lambda: controller_reachable(client))
        service = VolumeService(client, config)
        driver = DockerVolumeDriver(
            service,
            NodeOps(),
            MountStore(state_file),
            node=config.node_name,
            mount_root=mount_root,
            defaults=config.option_defaults,
            release_delay=max(0.0, args.release_delay),
            stale_grace=args.stale_grace,
        )
        driver.reconcile()
        start_metrics_server(args.metrics_port, args.metrics_address)
    except (OSError, errors.VolumeError) as exc:
        listen.sock.close()
        if listen.path:
            os.unlink(listen.path)
        return _fail(f"cannot start: {exc}")

    def health() -> dict[str, Any]:
        return {"linstor_reachable": reachable(), "node": config.node_name}

    log.info(
        "serving Docker volume plugin",
        extra={
            "fields": {
                "socket": args.socket,
                "controllers": list(config.controllers),
                "node": config.node_name,
                "mount_root": str(mount_root),
                "mounted_volumes": driver.store.mounted_count(),
            }
        },
    )
    driver.start_housekeeping(args.check_interval)
    try:
        serve(create_app(driver, health), listen, threads=args.threads)
    finally:
        driver.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

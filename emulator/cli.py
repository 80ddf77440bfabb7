"""``linstor-emulator serve``: run a single-node LINSTOR controller emulator."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from emulator import backups, names, versions
from emulator.config import (
    DEFAULT_MINOR_RANGE,
    DEFAULT_SYNC_SECONDS,
    DEFAULT_TCP_PORT_RANGE,
    MINOR_LIMITS,
    TCP_PORT_LIMITS,
    Config,
    default_node_name,
)
from emulator.in_use_reports import DEFAULT_DELAY_S as DEFAULT_IN_USE_REPORT_S
from emulator.storage import MKFS_MIN_SECONDS, MKFS_SECONDS_PER_GIB


class _JsonLines(logging.Formatter):
    """One JSON object per line, so the access log can be read by the same tools as the daemons'."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _version() -> str:
    """The installed project's version (the emulator ships in the same distribution)."""
    try:
        return metadata.version("linstor-volume-plugin")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="linstor-emulator",
        description="A single-node LINSTOR controller emulator (REST API v1) with real loop-device storage. "
        "Nothing is replicated: every replica of a volume shares one backing file on this host.",
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}", help="print the version")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the emulator")
    s.add_argument("--state-dir", required=True, type=Path, help="where state, pools and snapshots live")
    s.add_argument("--port", type=int, default=3370, help="TCP port (default 3370; 0 picks a free one)")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    s.add_argument("--nodes", default="", help="comma-separated virtual node names")
    s.add_argument("--local-node", default=None, help="name of the local node (default: the host name)")
    s.add_argument(
        "--dev-dir", type=Path, default=None, help="directory for drbd<minor> nodes (default <state-dir>/dev)"
    )
    s.add_argument("--storage-only", action="store_true", help="STORAGE layer only (no DRBD-shaped devices)")
    s.add_argument(
        "--strict-in-use", action="store_true", help="storage-only: report no in_use, never refuse with 997"
    )
    s.add_argument(
        "--strict-reflink", action="store_true", help="refuse snapshots where reflinks are unsupported"
    )
    s.add_argument(
        "--strict-clone", action="store_true", help="refuse FILE_THIN clones with 227, as LINSTOR does"
    )
    s.add_argument(
        "--allow-file-clone", action="store_true", help="accepted for compatibility; clones work by default"
    )
    s.add_argument("--pool-name", default="DfltStorPool", help="name of each node's FILE_THIN pool")
    s.add_argument(
        "--linstor-version",
        default=versions.NEWEST,
        metavar="X.Y.Z",
        help=f"controller release to play ({versions.OLDEST} to {versions.NEWEST}, default "
        f"{versions.NEWEST}); older ones report their version and lack the request fields added after them",
    )
    s.add_argument(
        "--thick-pool",
        default=None,
        metavar="NAME",
        help="add a thick FILE pool of this name on every node (its replicas sync before they are UpToDate)",
    )
    s.add_argument(
        "--sync-seconds",
        type=_seconds,
        default=DEFAULT_SYNC_SECONDS,
        help=f"initial sync time of a replica on a thick pool (default {DEFAULT_SYNC_SECONDS:g})",
    )
    s.add_argument(
        "--tcp-port-range",
        type=_number_range("DRBD TCP port", TCP_PORT_LIMITS),
        default=DEFAULT_TCP_PORT_RANGE,
        metavar="LOW-HIGH",
        help="DRBD TCP ports allocated per node, as the controller's TcpPortAutoRange "
        f"(default {DEFAULT_TCP_PORT_RANGE[0]}-{DEFAULT_TCP_PORT_RANGE[1]})",
    )
    s.add_argument(
        "--minor-range",
        type=_number_range("DRBD minor", MINOR_LIMITS),
        default=DEFAULT_MINOR_RANGE,
        metavar="LOW-HIGH",
        help="DRBD minors allocated per volume, as the controller's MinorNrAutoRange "
        f"(default {DEFAULT_MINOR_RANGE[0]}-{DEFAULT_MINOR_RANGE[1]})",
    )
    s.add_argument(
        "--mkfs-min-seconds",
        type=_seconds,
        default=MKFS_MIN_SECONDS,
        help=f"time limit of a satellite mkfs on the smallest device (default {MKFS_MIN_SECONDS:g})",
    )
    s.add_argument(
        "--mkfs-seconds-per-gib",
        type=_seconds,
        default=MKFS_SECONDS_PER_GIB,
        help=f"added to the mkfs time limit per GiB of the device (default {MKFS_SECONDS_PER_GIB:g})",
    )
    s.add_argument(
        "--in-use-report-seconds",
        type=_seconds,
        default=DEFAULT_IN_USE_REPORT_S,
        help="lag between a device's open or close and the controller's in_use and 997 checks knowing it "
        f"(default {DEFAULT_IN_USE_REPORT_S:g})",
    )
    s.add_argument("--tls-cert", default=None, help="serve HTTPS with this certificate (PEM)")
    s.add_argument("--tls-key", default=None, help="private key of --tls-cert (PEM)")
    s.add_argument("--tls-client-ca", default=None, help="require client certificates signed by this CA")
    s.add_argument(
        "--metrics",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="serve Prometheus metrics at /metrics on the API listener (default on)",
    )
    s.add_argument("--log-level", default="INFO", help="log level (default INFO)")
    return p


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds between 0 and 86400")
    return value


def _number_range(what: str, limits: tuple[int, int]) -> Callable[[str], tuple[int, int]]:
    """An argparse type for ``LOW-HIGH`` (inclusive), both within ``limits``."""

    def parse(text: str) -> tuple[int, int]:
        low_text, sep, high_text = text.strip().partition("-")
        if not sep or not low_text.strip().isdigit() or not high_text.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{text!r} is not a range LOW-HIGH of {what} numbers")
        low, high = int(low_text), int(high_text)
        if not limits[0] <= low <= high <= limits[1]:
            raise argparse.ArgumentTypeError(
                f"{what} range {low}-{high} must have LOW <= HIGH, both within {limits[0]}-{limits[1]}"
            )
        return low, high

    return parse


def _config(args: argparse.Namespace) -> Config:
    local = args.local_node or default_node_name()
    virtual = tuple(n.strip() for n in args.nodes.split(",") if n.strip())
    for n in (local, *virtual):
        problem = names.node_name_problem(n)
        if problem:
            raise SystemExit(f"linstor-emulator: {problem}")
    keys = [names.key(n) for n in (local, *virtual)]
    if len(set(keys)) != len(keys):
        raise SystemExit("linstor-emulator: node names must be unique (case-insensitive)")
    for pool in (args.pool_name, args.thick_pool):
        if pool is not None and names.storage_pool_name_problem(pool):
            raise SystemExit(f"linstor-emulator: {names.storage_pool_name_problem(pool)}")
    if args.thick_pool is not None and names.key(args.thick_pool) == names.key(args.pool_name):
        raise SystemExit("linstor-emulator: --thick-pool must differ from --pool-name")
    if versions.version_problem(args.linstor_version):
        raise SystemExit(f"linstor-emulator: {versions.version_problem(args.linstor_version)}")
    state_dir = args.state_dir.resolve()
    return Config(
        state_dir=state_dir,
        dev_dir=(args.dev_dir or state_dir / "dev").resolve(),
        local_node=local,
        virtual_nodes=virtual,
        drbd_shaped=not args.storage_only,
        strict_in_use=args.strict_in_use,
        strict_reflink=args.strict_reflink,
        strict_clone=args.strict_clone,
        pool_name=args.pool_name,
        thick_pool=args.thick_pool,
        sync_seconds=args.sync_seconds,
        tcp_port_range=args.tcp_port_range,
        minor_range=args.minor_range,
        in_use_report_seconds=args.in_use_report_seconds,
        version=versions.text(versions.parse(args.linstor_version) or (1, 34, 0)),
    )


def serve(args: argparse.Namespace) -> int:
    from emulator.core import Emulator
    from emulator.ops import reconnect
    from emulator.server import EmulatorServer, tls_context
    from emulator.storage import Storage

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLines())
    logging.basicConfig(level=args.log_level.upper(), handlers=[handler], force=True)
    log = logging.getLogger("emulator")
    config = _config(args)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise SystemExit("linstor-emulator: --tls-cert and --tls-key go together")
    if args.tls_client_ca and not args.tls_cert:
        raise SystemExit("linstor-emulator: --tls-client-ca needs --tls-cert and --tls-key")
    config.state_dir.mkdir(parents=True, exist_ok=True)
    config.dev_dir.mkdir(parents=True, exist_ok=True)
    storage = Storage(
        config.state_dir,
        config.dev_dir,
        drbd_shaped=config.drbd_shaped,
        strict_reflink=config.strict_reflink,
        mkfs_min_seconds=args.mkfs_min_seconds,
        mkfs_seconds_per_gib=args.mkfs_seconds_per_gib,
    )
    emu = Emulator(config, storage)
    emu.bootstrap()
    with emu.lock:
        # A restarted emulator restarts its virtual satellites too: they all connect again.
        for node in emu.state.nodes.values():
            if not node.online:
                reconnect(emu, node)
        emu.persist()
    # Shipments the previous process left unfinished end as the controller ends them.
    backups.recover(emu)
    tls = tls_context(args.tls_cert, args.tls_key, args.tls_client_ca) if args.tls_cert else None
    server = EmulatorServer(emu, args.host, args.port, tls, metrics=args.metrics)
    try:
        server.start()
    except OSError as exc:
        raise SystemExit(
            f"linstor-emulator: cannot listen on {args.host}:{args.port}: {exc.strerror}"
        ) from exc
    done = threading.Event()

    def stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: shutting down", signum)
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info(
        "LINSTOR emulator listening",
        extra={
            "fields": {
                "url": f"{'https' if tls else 'http'}://{args.host}:{server.port}",
                "local_node": config.local_node,
                "virtual_nodes": list(config.virtual_nodes),
                "mode": "drbd-shaped" if config.drbd_shaped else "storage-only",
                "state_dir": str(config.state_dir),
                "metrics": args.metrics,
            }
        },
    )
    while not done.wait(0.5):
        pass
    server.stop()
    with emu.lock:
        emu.persist()
    log.info("stopped; devices stay attached so mounts survive, and are found again at the next start")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return serve(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())

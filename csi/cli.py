"""``linstor-csi``: run the CSI driver as controller, node, or both (Nomad's monolith).

Flags mirror the official driver's deployment: the endpoint from ``--endpoint`` or
``CSI_ENDPOINT``, LINSTOR from ``LS_CONTROLLERS`` (and the TLS variables), the node
name from ``--node``. SIGTERM and SIGINT stop it gracefully and remove the socket.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Sequence

from csi import keys
from csi.server import MODES, CsiDriver, DriverOptions
from plugin.errors import VolumeError
from plugin.observability import setup_logging, start_metrics_server

log = logging.getLogger("csi")

# csi-sanity is stricter than the spec: letters at both ends.
_DRIVER_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linstor-csi", description="LINSTOR CSI driver (Kubernetes and Nomad)."
    )
    parser.add_argument(
        "--endpoint",
        default=os.environ.get("CSI_ENDPOINT", "unix:///csi/csi.sock"),
        help="gRPC endpoint, unix:///path/to/csi.sock (env CSI_ENDPOINT)",
    )
    parser.add_argument("--node", default=None, help="this node's LINSTOR node name (default: hostname)")
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=os.environ.get("CSI_MODE", "all"),
        help="services to run: controller, node, or all (default: all)",
    )
    parser.add_argument("--driver-name", default=keys.DEFAULT_DRIVER_NAME, help="CSI driver name")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)"
    )
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address for the metrics server")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("LOG_LEVEL", "info").lower(),
        type=str.lower,
        choices=["debug", "info", "warning", "error"],
        help="log level",
    )
    parser.add_argument(
        "--max-volumes-per-node",
        type=int,
        default=keys.DEFAULT_MAX_VOLUMES_PER_NODE,
        help="attach limit reported to the CO (0: no limit)",
    )
    parser.add_argument(
        "--grace-period", type=float, default=30.0, help="seconds running calls get to finish on SIGTERM"
    )
    return parser


def _build_driver(args: argparse.Namespace) -> CsiDriver:
    from plugin.config import load_config
    from plugin.linstor_client import LinstorClient
    from plugin.nodeops import NodeOps
    from plugin.volume_service import VolumeService

    overrides: dict[str, object] = {}
    if args.node:
        overrides["node_name"] = args.node
    # The CSI driver is configured by flags and environment only; the config file is Docker's.
    config = load_config(overrides, config_file=None)
    service = VolumeService(LinstorClient(config), config)
    nodeops = NodeOps() if args.mode in ("node", "all") else None
    options = DriverOptions(
        endpoint=args.endpoint,
        mode=args.mode,
        driver_name=args.driver_name,
        node_name=config.node_name,
        max_volumes_per_node=args.max_volumes_per_node,
    )
    return CsiDriver(service, nodeops, options)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    if not _DRIVER_NAME.match(args.driver_name):
        print(
            f"linstor-csi: invalid --driver-name {args.driver_name!r}: up to 63 characters, letters, "
            "digits, '.' and '-', starting and ending with a letter or digit",
            file=sys.stderr,
        )
        return 2
    if args.max_volumes_per_node < 0:
        print("linstor-csi: --max-volumes-per-node must not be negative", file=sys.stderr)
        return 2
    try:
        driver = _build_driver(args)
        start_metrics_server(args.metrics_port, args.metrics_address)
        driver.start()
    except (VolumeError, OSError, ValueError) as exc:
        print(f"linstor-csi: cannot start: {exc}", file=sys.stderr)
        return 1

    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("stopping on %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    stop.wait()
    driver.stop(args.grace_period)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

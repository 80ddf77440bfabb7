"""``linstor-csi``: run the CSI driver as controller, node, or both (Nomad's monolith).

Flags mirror the official driver's deployment: the endpoint from ``--endpoint`` or
``CSI_ENDPOINT``, LINSTOR from ``LS_CONTROLLERS`` (and the TLS variables), the node
name from ``--node``. SIGTERM and SIGINT stop it gracefully and remove the socket. The
node service works only below kubelet's directory, or below the ``--path-root``
directories given instead (Nomad's ``stage_publish_base_dir``).

The official binary's own flags are understood too, so its manifests (the Piraeus
operator's among them) run this driver unchanged: ``--csi-endpoint``,
``--linstor-endpoint``, ``--property-namespace``, ``--label-by-storage-pool`` and its log
levels, and ``--enable-consistency-groups`` (PVCs sharing the
``linstor.csi.linbit.com/consistency-group`` label become volumes of one LINSTOR resource,
the label read from Kubernetes; outside a pod the driver warns and runs without, as LINBIT's
does). Its tuning flags are accepted with a warning that they change nothing here; a flag for
a feature this driver lacks (NFS RWX, ...) stops the start with a sentence saying so, rather
than running without what was asked for.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Sequence

from plugin.allocator import tune_malloc
from plugin.startup import collector_paused

with collector_paused():  # most of the start-up time: see plugin.startup
    from csi import keys
    from csi.server import MODES, Backend, CsiDriver, DriverOptions
    from csi.validation import DEFAULT_PATH_ROOTS
    from plugin import progress
    from plugin.errors import InvalidArgument, VolumeError
    from plugin.observability import setup_logging, start_metrics_server
    from plugin.params.values import BadValue, parse_bool
    from plugin.version import add_version_flag

log = logging.getLogger("csi")

STOP_CHECK_SECONDS = 0.5  # how late a SIGTERM delivered to another thread may be noticed

# csi-sanity is stricter than the spec: letters at both ends.
_DRIVER_NAME = re.compile(r"^[A-Za-z]([A-Za-z0-9.-]{0,61}[A-Za-z0-9])?$")


# The official driver's log levels (logrus) mapped onto ours.
_LOG_LEVEL_ALIASES = {"trace": "debug", "warn": "warning", "fatal": "error", "panic": "error"}

# Official flags for tuning that has no counterpart here: accepted, with a warning.
IGNORED_OFFICIAL_FLAGS = {
    "--node-cache-timeout": "node and storage-pool views are read live; only this node's topology is cached",
    "--resource-cache-timeout": "resource views are read live",
    "--resync-after": "there is no periodic resync loop",
    "--linstor-api-requests-per-second": "there is no client-side rate limit",
    "--linstor-api-burst": "there is no client-side rate limit",
    "--enable-volume-snapshot-classes": "snapshot classes are always supported",
}

# Official flags for features this driver does not have: refused when switched on.
UNSUPPORTED_OFFICIAL_FLAGS = {
    "--linstor-skip-tls-verification": "the controller's certificate is always verified; set LS_ROOT_CA "
    "to the CA that signed it",
    "--bearer-token": "token authentication is not supported; use client certificates "
    "(LS_USER_CERTIFICATE, LS_USER_KEY)",
    "--enable-rwx": "ReadWriteMany volumes over NFS are not supported",
    "--nfs-service-namespace": "ReadWriteMany volumes over NFS are not supported",
    "--nfs-reactor-config-map-name": "ReadWriteMany volumes over NFS are not supported",
    "--disable-rwx-block-validation": "ReadWriteMany volumes over NFS are not supported",
    "--default-remote-access-policy": "set allowRemoteVolumeAccess in the StorageClass instead",
}

# Which of those are on/off switches (``--enable-rwx=false`` asks for nothing).
_OFFICIAL_SWITCHES = frozenset(
    {
        "--linstor-skip-tls-verification",
        "--enable-rwx",
        "--disable-rwx-block-validation",
    }
)


def _flag_bool(text: str) -> bool:
    try:
        return parse_bool(text)
    except BadValue as exc:
        raise argparse.ArgumentTypeError(exc.expected) from None


def _log_level(text: str) -> str:
    word = text.lower()
    return _LOG_LEVEL_ALIASES.get(word, word)


class _Ignored(argparse.Action):
    """An official tuning flag: remembered, so a warning can say it changes nothing."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        namespace.ignored_flags = [*getattr(namespace, "ignored_flags", []), option_string]


class _Unsupported(argparse.Action):
    """An official feature flag: switched off it is harmless, switched on it stops the start."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:  # fmt: skip
        flag = option_string or self.dest
        if isinstance(values, str) and not values.strip():
            return  # an empty path or name asks for nothing
        if flag in _OFFICIAL_SWITCHES and isinstance(values, str):
            try:
                switched_on = parse_bool(values)
            except BadValue:
                switched_on = True
        else:
            switched_on = True  # a bare switch, or a value (a path, a name, a policy) that asks for it
        if switched_on:
            parser.error(f"{flag} is a flag of LINBIT's driver that this driver does not support: "
                         f"{UNSUPPORTED_OFFICIAL_FLAGS[flag]}")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="linstor-csi", description="LINSTOR CSI driver (Kubernetes and Nomad)."
    )
    parser.add_argument(
        "--endpoint",
        "--csi-endpoint",
        dest="endpoint",
        default=os.environ.get("CSI_ENDPOINT", "unix:///csi/csi.sock"),
        help="gRPC endpoint, unix:///path/to/csi.sock (env CSI_ENDPOINT)",
    )
    parser.add_argument(
        "--controllers",
        "--linstor-endpoint",  # the official driver's spelling, which its manifests use
        dest="linstor_endpoint",
        default=None,
        help="LINSTOR controller URL(s), comma separated (default: LS_CONTROLLERS)",
    )
    parser.add_argument(
        "--property-namespace",
        default=None,
        help="node properties under this namespace are topology keys, and bare property names in "
        "replicasOnSame/Different get it as prefix (default: Aux; the Piraeus operator uses Aux/topology)",
    )
    parser.add_argument(
        "--label-by-storage-pool",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=None,
        metavar="BOOL",
        help="report linbit.com/sp-<pool> topology keys (default: true)",
    )
    parser.add_argument("--node", default=None, help="this node's LINSTOR node name (default: hostname)")
    parser.add_argument(
        "--path-root",
        dest="path_roots",
        action="append",
        default=None,
        metavar="DIR",
        help="the node service stages, publishes and unmounts only below this directory; repeat for "
        f"several (default: {', '.join(DEFAULT_PATH_ROOTS)}, kubelet's; Nomad: its stage_publish_base_dir, "
        "e.g. /local/csi)",
    )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default=os.environ.get("CSI_MODE", "all"),
        help="services to run: controller, node, or all (default: all)",
    )
    add_version_flag(parser)
    parser.add_argument("--driver-name", default=keys.DEFAULT_DRIVER_NAME, help="CSI driver name")
    parser.add_argument(
        "--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)"
    )
    parser.add_argument("--metrics-address", default="0.0.0.0", help="address for the metrics server")
    parser.add_argument(
        "--log-level",
        default=_log_level(os.environ.get("LOG_LEVEL", "info")),
        type=_log_level,
        choices=["debug", "info", "warning", "error"],
        help="log level",
    )
    parser.add_argument(
        "--log-format", default="json", choices=["json", "text"], help="JSON lines or text (default: json)"
    )
    parser.add_argument(
        "--max-volumes-per-node",
        type=int,
        default=keys.DEFAULT_MAX_VOLUMES_PER_NODE,
        help="attach limit: the node reports it, the controller refuses publications beyond it (0: no limit)",
    )
    parser.add_argument(
        "--enable-consistency-groups",
        type=_flag_bool,
        nargs="?",
        const=True,
        default=False,
        metavar="BOOL",
        help="PVCs sharing the linstor.csi.linbit.com/consistency-group label become volumes of one LINSTOR "
        "resource (controller; reads PVCs from the Kubernetes API with the pod's service account)",
    )
    parser.add_argument(
        "--grace-period", type=float, default=30.0, help="seconds running calls get to finish on SIGTERM"
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=progress.DEFAULT_INTERVAL,
        help="seconds between the log lines of a long operation (clone, restore, mkfs) still under way "
        "(default: %(default)s)",
    )
    parser.set_defaults(ignored_flags=[])
    for flag in IGNORED_OFFICIAL_FLAGS:
        parser.add_argument(flag, action=_Ignored, nargs="?", help=argparse.SUPPRESS)
    for flag in UNSUPPORTED_OFFICIAL_FLAGS:
        parser.add_argument(flag, action=_Unsupported, nargs="?", help=argparse.SUPPRESS)
    return parser


def _build_driver(args: argparse.Namespace) -> CsiDriver:
    """Configuration and the LINSTOR client now (their errors stop the start); the rest after listening.

    Probe needs only the controller check, so the socket listens before the core is
    imported: the volume service, node operations and the Kubernetes client for consistency
    groups are built by the driver's warm-up right after start (or by the first call).
    """
    from plugin.config import load_config
    from plugin.health import controller_reachable
    from plugin.linstor.client import LinstorClient

    overrides: dict[str, object] = {
        "controllers": args.linstor_endpoint,
        "property_namespace": args.property_namespace,
        "label_by_storage_pool": args.label_by_storage_pool,
    }
    if args.node:
        overrides["node_name"] = args.node
    # The CSI driver is configured by flags and environment only; the config file is Docker's.
    config = load_config(overrides, config_file=None)
    client = LinstorClient(config)

    def build() -> Backend:
        from plugin.node.ops import NodeOps
        from plugin.volumes.consistency_group_service import ConsistencyGroupService

        # Volumes of consistency groups are understood in every mode; only making them needs the PVCs.
        service = ConsistencyGroupService(client, config, _pvc_groups(args))
        return service, (NodeOps() if args.mode in ("node", "all") else None)

    options = DriverOptions(
        endpoint=args.endpoint,
        mode=args.mode,
        driver_name=args.driver_name,
        node_name=config.node_name,
        max_volumes_per_node=args.max_volumes_per_node,
        path_roots=tuple(args.path_roots or DEFAULT_PATH_ROOTS),
    )
    return CsiDriver.deferred(build, lambda: controller_reachable(client), options)


def _pvc_groups(args: argparse.Namespace) -> Callable[[str, str], str | None] | None:
    """The PVC label reader for --enable-consistency-groups, when the controller runs in a pod."""
    if not args.enable_consistency_groups or args.mode == "node":
        return None
    from csi.kube import PvcGroups, in_cluster_configuration

    try:
        return PvcGroups(in_cluster_configuration())
    except InvalidArgument as exc:
        log.warning("consistency groups stay off, the driver runs without them: %s", exc)
        return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    tune_malloc()  # before any thread: see plugin.allocator
    setup_logging(args.log_level, json_output=args.log_format == "json")
    for flag in args.ignored_flags:
        log.warning("%s has no effect in this driver: %s", flag, IGNORED_OFFICIAL_FLAGS[flag])
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
    if args.progress_interval <= 0:
        print("linstor-csi: --progress-interval must be greater than zero", file=sys.stderr)
        return 2
    progress.set_interval(args.progress_interval)
    try:
        with collector_paused():  # the LINSTOR client's imports and the server's start
            driver = _build_driver(args)
            if args.metrics_port > 0:
                driver.preregister_metrics()
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
    # Python runs signal handlers only in the main thread, and a signal the kernel hands to one
    # of gRPC's threads does not wake a main thread blocked for good: wake it now and then.
    while not stop.wait(STOP_CHECK_SECONDS):
        pass
    driver.stop(args.grace_period)
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The gRPC server: endpoint handling, service registration by mode, clean shutdown.

A CSI endpoint is a unix socket the CO owns the directory of. A socket file left by
a killed driver is removed before binding, and ours is removed on stop, so a restart
never trips over the previous run. The socket is made mode 0660, owned by root when the
driver runs as root, whatever the umask: whoever reaches it can mount and unmount. The
standard gRPC health service runs on the same socket for probes that speak it.

The socket listens as soon as the Identity service can answer: Probe needs only the
controller check, not the rest of the core. The other services are registered as stand-ins
(:mod:`csi.deferred`) and built by a warm-up thread right after start, or by the first call
that needs them, whichever comes first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from csi import keys
from csi.deferred import DeferredServicer, Once
from csi.errors import RESULT_CODES
from csi.generated import csi_pb2_grpc
from csi.identity import IdentityServicer
from csi.interceptor import ObservingInterceptor, served_methods
from csi.validation import DEFAULT_PATH_ROOTS, PathRoots
from plugin.errors import InvalidArgument
from plugin.observability import preregister

if TYPE_CHECKING:
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)

MODES = ("controller", "node", "all")
SOCKET_MODE = 0o660

#: What the services other than Identity call: the core's volume service and node operations.
Backend = tuple["VolumeService", "NodeOps | None"]


@dataclass(frozen=True)
class Endpoint:
    address: str  # what grpc binds to
    socket_path: str | None  # the unix socket file, if any


def parse_endpoint(endpoint: str) -> Endpoint:
    """Accept ``unix:///abs/path``, ``unix:relative``, a bare path, or ``tcp://host:port``."""
    if endpoint.startswith("unix://"):
        path = endpoint[len("unix://") :]
    elif endpoint.startswith("unix:"):
        path = endpoint[len("unix:") :]
    elif endpoint.startswith("tcp://"):
        return Endpoint(address=endpoint[len("tcp://") :], socket_path=None)
    elif "://" in endpoint:
        raise InvalidArgument(f"unsupported endpoint {endpoint!r}: use unix:///path/to/csi.sock")
    else:
        path = endpoint
    if not path:
        raise InvalidArgument(f"endpoint {endpoint!r} has no socket path")
    path = os.path.abspath(path)
    return Endpoint(address=f"unix://{path}", socket_path=path)


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def _secure_socket(path: str) -> None:
    """Mode 0660 and, as root, owner root:root, so only root (and root's group) can call in."""
    if os.geteuid() == 0:
        os.chown(path, 0, 0, follow_symlinks=False)
    os.chmod(path, SOCKET_MODE)


def _remove_stale_socket(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise InvalidArgument(f"{path} exists and is not a socket; refusing to replace it")
    os.unlink(path)


@dataclass(frozen=True)
class DriverOptions:
    endpoint: str
    mode: str = "all"
    driver_name: str = keys.DEFAULT_DRIVER_NAME
    node_name: str = ""
    max_volumes_per_node: int = keys.DEFAULT_MAX_VOLUMES_PER_NODE
    workers: int = 64
    # Staging and target paths are accepted only below these (node service).
    path_roots: tuple[str, ...] = DEFAULT_PATH_ROOTS


class CsiDriver:
    """The running driver: one gRPC server with the services the mode asks for.

    Built from a ready service and node operations, everything is built at once. Built with
    :meth:`deferred`, only Identity is: the rest comes from ``build`` after :meth:`start`.
    """

    def __init__(self, service: VolumeService, nodeops: NodeOps | None, options: DriverOptions) -> None:
        self._setup(
            Once(lambda: (service, nodeops)), service.healthy, options, have_nodeops=nodeops is not None
        )
        self.warm_up()

    @classmethod
    def deferred(
        cls, build: Callable[[], Backend], healthy: Callable[[], bool], options: DriverOptions
    ) -> CsiDriver:
        """A driver whose Probe answers from ``healthy`` at once and whose core ``build`` makes later."""
        driver = cls.__new__(cls)
        driver._setup(Once(build), healthy, options, have_nodeops=True)
        return driver

    def _setup(
        self, backend: Once[Backend], healthy: Callable[[], bool], options: DriverOptions, have_nodeops: bool
    ) -> None:
        if options.mode not in MODES:
            raise InvalidArgument(f"mode must be one of {', '.join(MODES)}, not {options.mode!r}")
        if options.mode in ("node", "all") and (not have_nodeops or not options.node_name):
            raise InvalidArgument("node mode needs the node name (--node) and node operations")
        self.options = options
        self.endpoint = parse_endpoint(options.endpoint)
        self._backend = backend
        roots = PathRoots(options.path_roots)
        # No maximum_concurrent_rpcs: grpc would answer RESOURCE_EXHAUSTED, which COs
        # read as "no space here"; the pool size and per-volume locks bound the work.
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=options.workers, thread_name_prefix="csi"),
            interceptors=[ObservingInterceptor()],
        )
        self._identity = IdentityServicer(healthy, options.driver_name)
        csi_pb2_grpc.add_IdentityServicer_to_server(self._identity, self._server)
        self._servicers: list[Once[object]] = []
        served = ["csi.v1.Identity"]
        if options.mode in ("controller", "all"):
            controller = self._deferred(lambda: _controller(backend.get(), options))
            csi_pb2_grpc.add_ControllerServicer_to_server(controller, self._server)
            group = self._deferred(lambda: _group_controller(backend.get()))
            csi_pb2_grpc.add_GroupControllerServicer_to_server(group, self._server)
            served += ["csi.v1.Controller", "csi.v1.GroupController"]
        if options.mode in ("node", "all"):
            node = self._deferred(lambda: _node(backend.get(), options, roots))
            csi_pb2_grpc.add_NodeServicer_to_server(node, self._server)
            served.append("csi.v1.Node")
        self._health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        for name in ["", *served]:
            self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self._served = tuple(served)
        self._warm = threading.Event()
        self._started = False

    def preregister_metrics(self) -> None:
        """Make the series of every served method exist at zero, so scrapes see them at once.

        Done only by a driver that serves metrics, before their port opens: it costs several
        milliseconds of start-up (hundreds of series), which nobody could see without the port.
        """
        preregister("csi", served_methods(self._served), RESULT_CODES)

    def _deferred(self, build: Callable[[], object]) -> DeferredServicer:
        servicer: Once[object] = Once(build)
        self._servicers.append(servicer)
        return DeferredServicer(servicer)

    def warm_up(self) -> None:
        """Build the core and every service now."""
        try:
            self._backend.get()
            for servicer in self._servicers:
                servicer.get()
        finally:
            self._warm.set()

    def _warm_up_in_background(self) -> None:
        # The controller check first: a CO probes right after the socket appears, and building
        # the services beside the check would only slow the check down (one interpreter lock).
        self._identity.ready()
        try:
            self.warm_up()
        except Exception:  # the first call that needs the service builds it again and reports why
            log.exception("building the CSI services failed; the first call that needs them tries again")

    def wait_warm(self, timeout: float | None = None) -> bool:
        """Whether the warm-up has run (successfully or not) within ``timeout`` seconds."""
        return self._warm.wait(timeout)

    def start(self) -> None:
        if self.endpoint.socket_path:
            os.makedirs(os.path.dirname(self.endpoint.socket_path), exist_ok=True)
            _remove_stale_socket(self.endpoint.socket_path)
        # gRPC creates the socket when the port is added: under umask 0 it would be 0777
        # until the chmod below, so the umask closes that window.
        with _umask(0o177):
            port = self._server.add_insecure_port(self.endpoint.address)
        if self.endpoint.socket_path is None and port == 0:
            raise InvalidArgument(f"cannot listen on {self.options.endpoint}")
        if self.endpoint.socket_path:
            _secure_socket(self.endpoint.socket_path)
        if not self._warm.is_set():  # its controller check first: started now, it overlaps the server's start
            threading.Thread(target=self._warm_up_in_background, name="csi-warm-up", daemon=True).start()
        self._server.start()
        self._started = True
        log.info(
            "CSI driver listening",
            extra={
                "fields": {
                    "endpoint": self.endpoint.address,
                    "mode": self.options.mode,
                    "driver": self.options.driver_name,
                    "node": self.options.node_name,
                }
            },
        )

    def stop(self, grace: float = 10.0) -> None:
        """Refuse new calls, let running ones finish within ``grace``, remove the socket."""
        if self._started:
            self._health.enter_graceful_shutdown()
            self._server.stop(grace).wait()
            self._started = False
        if self.endpoint.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.endpoint.socket_path)

    def wait(self, timeout: float | None = None) -> bool:
        return bool(self._server.wait_for_termination(timeout))


# The services are imported here, not at the top: importing them is most of the start-up time.
def _controller(backend: Backend, options: DriverOptions) -> object:
    from csi.controller import ControllerServicer

    return ControllerServicer(backend[0], max_volumes_per_node=options.max_volumes_per_node)


def _group_controller(backend: Backend) -> object:
    from csi.group_controller import GroupControllerServicer

    return GroupControllerServicer(backend[0])


def _node(backend: Backend, options: DriverOptions, roots: PathRoots) -> object:
    from csi.node import NodeServicer

    service, nodeops = backend
    if nodeops is None:
        raise InvalidArgument("node mode needs node operations")
    return NodeServicer(service, nodeops, options.node_name, roots, options.max_volumes_per_node)

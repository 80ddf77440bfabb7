"""CSI Identity service: name, version, capabilities and a fast Probe.

Probe answers from the core's cached view of LINSTOR's health, because sidecars and
Nomad call it with 1-5 second timeouts; a slow LINSTOR must not get the plugin
restarted. An unreachable controller is reported as "not ready", not as an error.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from importlib import metadata

import grpc

from csi import capabilities, keys
from csi.generated import csi_pb2, csi_pb2_grpc

log = logging.getLogger(__name__)


class BackgroundHealth:
    """Answer "is LINSTOR reachable" at once, refreshing the answer in the background.

    The core's check is cached but still calls the controller when the cache is stale,
    and an unreachable controller can take the whole connect timeout. Probe must not
    wait for that: it returns the last known answer and starts one refresh at a time.
    Only the very first Probe waits briefly for a first answer. A "ready" answer is
    reused for ``max_age`` seconds; a "not ready" one is not: each Probe after it starts
    a new check, whose answer the next Probe reports, rather than waiting ``max_age`` out.
    """

    def __init__(self, check: Callable[[], bool], max_age: float = 2.0, first_wait: float = 1.0) -> None:
        self._check = check
        self._max_age = max_age
        self._first_wait = first_wait
        self._lock = threading.Lock()
        self._value: bool | None = None
        self._at = 0.0
        self._running = False
        self._first = threading.Event()

    def _refresh(self) -> None:
        try:
            value = bool(self._check())
        except Exception:  # a failing check means "not ready", never a crashed Probe
            log.warning("health check of the LINSTOR controller failed", exc_info=True)
            value = False
        with self._lock:
            self._value, self._at, self._running = value, time.monotonic(), False
        self._first.set()

    def ready(self) -> bool:
        with self._lock:
            stale = not self._value or time.monotonic() - self._at > self._max_age
            if stale and not self._running:
                self._running = True
                threading.Thread(target=self._refresh, name="csi-health", daemon=True).start()
        if not self._first.is_set():
            self._first.wait(self._first_wait)
        with self._lock:
            return bool(self._value)


def driver_version() -> str:
    try:
        return metadata.version("linstor-volume-plugin")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class IdentityServicer(csi_pb2_grpc.IdentityServicer):
    def __init__(
        self,
        healthy: Callable[[], bool],
        driver_name: str = keys.DEFAULT_DRIVER_NAME,
        version: str | None = None,
    ) -> None:
        """``healthy`` says whether the LINSTOR controller answers (the volume service's check).

        The version is looked up on the first GetPluginInfo, not here: reading the installed
        metadata is start-up time spent before the socket listens.
        """
        self._health = BackgroundHealth(healthy)
        self._name = driver_name
        self._version = version

    def GetPluginInfo(
        self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginInfoResponse:
        if self._version is None:
            self._version = driver_version()
        return csi_pb2.GetPluginInfoResponse(name=self._name, vendor_version=self._version)

    def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetPluginCapabilitiesResponse:
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=list(capabilities.PLUGIN_CAPABILITIES))

    def ready(self) -> bool:
        """What Probe answers: whether the LINSTOR controller was reached (cached, refreshed behind)."""
        return self._health.ready()

    def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext) -> csi_pb2.ProbeResponse:
        return csi_pb2.ProbeResponse(ready={"value": self.ready()})

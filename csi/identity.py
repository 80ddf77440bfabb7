"""CSI Identity service: name, version, capabilities and a fast Probe.

Probe answers from the core's cached view of LINSTOR's health, because sidecars and
Nomad call it with 1-5 second timeouts; a slow LINSTOR must not get the plugin
restarted. An unreachable controller is reported as "not ready", not as an error.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

import grpc

from csi import capabilities, keys
from csi.generated import csi_pb2, csi_pb2_grpc

if TYPE_CHECKING:
    from plugin.volume_service import VolumeService


def driver_version() -> str:
    try:
        return metadata.version("linstor-volume-plugin")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class IdentityServicer(csi_pb2_grpc.IdentityServicer):
    def __init__(
        self, service: VolumeService, driver_name: str = keys.DEFAULT_DRIVER_NAME, version: str | None = None
    ) -> None:
        self._service = service
        self._name = driver_name
        self._version = version or driver_version()

    def GetPluginInfo(self, request: csi_pb2.GetPluginInfoRequest, context: grpc.ServicerContext):
        return csi_pb2.GetPluginInfoResponse(name=self._name, vendor_version=self._version)

    def GetPluginCapabilities(
        self, request: csi_pb2.GetPluginCapabilitiesRequest, context: grpc.ServicerContext
    ):
        return csi_pb2.GetPluginCapabilitiesResponse(capabilities=list(capabilities.PLUGIN_CAPABILITIES))

    def Probe(self, request: csi_pb2.ProbeRequest, context: grpc.ServicerContext):
        return csi_pb2.ProbeResponse(ready={"value": bool(self._service.healthy())})

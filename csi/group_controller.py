"""CSI GroupController service: group snapshots (CREATE_DELETE_GET_VOLUME_GROUP_SNAPSHOT).

Handlers check the request first (required fields before any lookup, as the spec's
conformance tools expect), call :class:`plugin.volumes.group_snapshots.GroupSnapshots` and shape
the answer. A second call for a group that is still being worked on is ABORTED.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc

from csi import capabilities, convert
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.validation import check_name, require
from plugin import errors, names
from plugin.backups import parse_snapshot_class
from plugin.keyed_locks import KeyedLocks
from plugin.volumes.group_snapshots import GroupSnapshots

if TYPE_CHECKING:
    from plugin.volumes.service import VolumeService


class GroupControllerServicer(csi_pb2_grpc.GroupControllerServicer):
    def __init__(self, service: VolumeService) -> None:
        self._groups = GroupSnapshots(service)
        self._inflight = KeyedLocks("group snapshot")

    def GroupControllerGetCapabilities(
        self, request: csi_pb2.GroupControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GroupControllerGetCapabilitiesResponse:
        return csi_pb2.GroupControllerGetCapabilitiesResponse(
            capabilities=capabilities.group_controller_capabilities()
        )

    def CreateVolumeGroupSnapshot(
        self, request: csi_pb2.CreateVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateVolumeGroupSnapshotResponse:
        check_name(request.name)
        require(request, "source_volume_ids")
        snapshot_class = parse_snapshot_class(request.parameters, request.secrets)
        if snapshot_class.remote:
            raise errors.InvalidArgument(
                f"snapshot type {snapshot_class.type!r} (backups to a remote) is not offered for group "
                "snapshots; use a VolumeGroupSnapshotClass of type InCluster"
            )
        with self._inflight.hold(names.snapshot_name_for(request.name), "CreateVolumeGroupSnapshot"):
            group = self._groups.create(request.name, list(request.source_volume_ids))
        return csi_pb2.CreateVolumeGroupSnapshotResponse(group_snapshot=convert.csi_group_snapshot(group))

    def DeleteVolumeGroupSnapshot(
        self, request: csi_pb2.DeleteVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.DeleteVolumeGroupSnapshotResponse:
        require(request, "group_snapshot_id", "snapshot_ids")
        with self._inflight.hold(request.group_snapshot_id.lower(), "DeleteVolumeGroupSnapshot"):
            self._groups.delete(request.group_snapshot_id, list(request.snapshot_ids))
        return csi_pb2.DeleteVolumeGroupSnapshotResponse()

    def GetVolumeGroupSnapshot(
        self, request: csi_pb2.GetVolumeGroupSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetVolumeGroupSnapshotResponse:
        require(request, "group_snapshot_id", "snapshot_ids")
        group = self._groups.get(request.group_snapshot_id, list(request.snapshot_ids))
        return csi_pb2.GetVolumeGroupSnapshotResponse(group_snapshot=convert.csi_group_snapshot(group))

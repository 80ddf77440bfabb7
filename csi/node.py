"""CSI Node service: stage (format guard + mount), publish (bind), stats, expand, info.

Staging mounts the volume's filesystem once per staging path; publishing bind-mounts
from there, so read-only pods get a read-only view of a read-write staging mount.
Nomad stages one volume at several staging paths on a node (one per usage mode), so
nothing here assumes a single staging path per volume. Raw block volumes skip the
staging mount: publish binds the device node onto a file at the target path.

The node service talks to LINSTOR only for NodeGetInfo (topology, cached) and when a
request lacks the publish context (volumes attached by an older driver).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from csi import capabilities, convert, keys
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.inflight import InFlight
from csi.validation import check_path, require
from plugin import errors

if TYPE_CHECKING:
    from plugin.nodeops import NodeOps
    from plugin.volume_service import VolumeService

log = logging.getLogger(__name__)

Usage = csi_pb2.VolumeUsage


def _same_device(a: str, b: str) -> bool:
    """True when two paths name the same block device (a DRBD-style path may be a symlink)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.stat(a).st_rdev == os.stat(b).st_rdev != 0
    except OSError:
        return False


class NodeServicer(csi_pb2_grpc.NodeServicer):
    def __init__(
        self,
        service: VolumeService,
        nodeops: NodeOps,
        node_name: str,
        max_volumes_per_node: int = keys.DEFAULT_MAX_VOLUMES_PER_NODE,
        inflight: InFlight | None = None,
    ) -> None:
        self._service = service
        self._ops = nodeops
        self._node = node_name
        self._max_volumes = max_volumes_per_node
        self._inflight = inflight or InFlight("volume path")
        self._topology: dict[str, str] | None = None
        self._topology_lock = threading.Lock()

    # ------------------------------------------------------------ helpers

    def _device(self, volume_id: str, publish_context: Mapping[str, str]) -> str:
        """The block device of the volume on this node, from the publish context or LINSTOR."""
        device = publish_context.get(keys.DEVICE_PATH, "")
        if device:
            if not os.path.exists(device):
                self._service.get_volume(volume_id)  # NOT_FOUND for a volume that is gone
            return device
        volume = self._service.get_volume(volume_id)
        for replica in volume.replicas:
            if replica.node == self._node and replica.device_path:
                return replica.device_path
        raise errors.FailedPrecondition(
            f"volume {volume_id} is not attached to node {self._node}; ControllerPublishVolume must run first"
        )

    # ------------------------------------------------------------ stage

    def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        require(request, "volume_id")
        check_path(request.staging_target_path, "staging_target_path")
        require(request, "volume_capability")
        access = capabilities.parse_supported(request.volume_capability)
        staging = request.staging_target_path
        with self._inflight.hold(f"{request.volume_id}@{staging}", "NodeStageVolume"):
            device = self._device(request.volume_id, request.publish_context)
            if access.block:
                self._ops.wait_for_device(device)
                return csi_pb2.NodeStageVolumeResponse()
            current = self._ops.mount_source(staging)
            if current and not _same_device(current, device):
                raise errors.AlreadyExists(f"{staging} already has another device mounted ({current})")
            fs_type = access.fs_type or request.publish_context.get(keys.FS_TYPE) or "ext4"
            options = convert.merge_options(
                convert.split_options(request.volume_context.get(keys.MOUNT_OPTIONS)),
                access.mount_flags,
                # restored snapshots carry their origin's xfs uuid; let both mount side by side
                ["nouuid"] if fs_type == "xfs" else [],
            )
            self._ops.stage(
                device,
                staging,
                fs_type,
                mount_opts=options,
                readonly=access.read_only,
                post_mount_xfs_opts=request.volume_context.get(keys.POST_MOUNT_XFS_OPTS, ""),
            )
        return csi_pb2.NodeStageVolumeResponse()

    def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        require(request, "volume_id")
        check_path(request.staging_target_path, "staging_target_path")
        with self._inflight.hold(f"{request.volume_id}@{request.staging_target_path}", "NodeUnstageVolume"):
            # The CO created the staging directory and removes it; leave it empty.
            self._ops.unmount(request.staging_target_path, remove_target=False)
        return csi_pb2.NodeUnstageVolumeResponse()

    # ------------------------------------------------------------ publish

    def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        require(request, "volume_id")
        check_path(request.target_path, "target_path")
        check_path(request.staging_target_path, "staging_target_path")
        require(request, "volume_capability")
        access = capabilities.parse_supported(request.volume_capability)
        readonly = request.readonly or access.read_only
        target = request.target_path
        with self._inflight.hold(f"{request.volume_id}@{target}", "NodePublishVolume"):
            if access.block:
                device = self._device(request.volume_id, request.publish_context)
                self._ops.bind_block_device(device, target, readonly=readonly)
                return csi_pb2.NodePublishVolumeResponse()
            if not self._ops.is_mounted(request.staging_target_path):
                self._service.get_volume(request.volume_id)  # NOT_FOUND wins over "not staged"
                raise errors.FailedPrecondition(
                    f"volume {request.volume_id} is not staged at {request.staging_target_path}; "
                    "NodeStageVolume must run first"
                )
            self._ops.bind_mount(request.staging_target_path, target, readonly=readonly)
        return csi_pb2.NodePublishVolumeResponse()

    def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        require(request, "volume_id")
        check_path(request.target_path, "target_path")
        with self._inflight.hold(f"{request.volume_id}@{request.target_path}", "NodeUnpublishVolume"):
            self._ops.unmount(request.target_path, remove_target=True)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # ------------------------------------------------------------ stats and expansion

    def _mounted_path(self, volume_id: str, path: str) -> None:
        if not os.path.exists(path):
            raise errors.NotFound(f"path {path} of volume {volume_id} does not exist")
        if not self._ops.is_mounted(path):
            raise errors.NotFound(f"path {path} is not a mounted path of volume {volume_id}")

    def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        require(request, "volume_id")
        check_path(request.volume_path, "volume_path")
        path = request.volume_path
        self._mounted_path(request.volume_id, path)
        condition = self._ops.condition(path)
        volume_condition = csi_pb2.VolumeCondition(abnormal=condition.abnormal, message=condition.message)
        if not os.path.isdir(path):  # a raw block volume bound onto a file
            size = self._ops.device_size_bytes(path)  # the file *is* the bound device node
            return csi_pb2.NodeGetVolumeStatsResponse(
                usage=[Usage(unit=Usage.BYTES, total=size)], volume_condition=volume_condition
            )
        stats = self._ops.stats(path)
        usage = [
            Usage(
                unit=Usage.BYTES,
                total=stats.total_bytes,
                used=stats.used_bytes,
                available=stats.available_bytes,
            )
        ]
        if stats.total_inodes is not None:
            usage.append(
                Usage(
                    unit=Usage.INODES,
                    total=stats.total_inodes,
                    used=stats.used_inodes or 0,
                    available=stats.available_inodes or 0,
                )
            )
        return csi_pb2.NodeGetVolumeStatsResponse(usage=usage, volume_condition=volume_condition)

    def NodeExpandVolume(
        self, request: csi_pb2.NodeExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeExpandVolumeResponse:
        require(request, "volume_id")
        check_path(request.volume_path, "volume_path")
        access = (
            capabilities.parse(request.volume_capability) if request.HasField("volume_capability") else None
        )
        path = request.volume_path
        with self._inflight.hold(f"{request.volume_id}@{path}", "NodeExpandVolume"):
            self._mounted_path(request.volume_id, path)
            block = access.block if access is not None else not os.path.isdir(path)
            if block:
                return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=self._ops.device_size_bytes(path))
            staging = request.staging_target_path
            grow_at = staging if staging and self._ops.is_mounted(staging) else path
            self._ops.grow_filesystem(grow_at)
            device = self._ops.mount_source(grow_at)
            size = self._ops.device_size_bytes(device) if device else request.capacity_range.required_bytes
        return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=size)

    # ------------------------------------------------------------ info

    def NodeGetCapabilities(
        self, request: csi_pb2.NodeGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetCapabilitiesResponse:
        return csi_pb2.NodeGetCapabilitiesResponse(capabilities=capabilities.node_capabilities())

    def NodeGetInfo(
        self, request: csi_pb2.NodeGetInfoRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetInfoResponse:
        with self._topology_lock:
            if self._topology is None:
                # COs cache NodeGetInfo for the plugin's lifetime; so do we.
                self._topology = dict(self._service.node_topology(self._node))
            segments = dict(self._topology)
        segments.setdefault(keys.TOPOLOGY_HOSTNAME, self._node)
        return csi_pb2.NodeGetInfoResponse(
            node_id=self._node,
            max_volumes_per_node=self._max_volumes,
            accessible_topology=csi_pb2.Topology(segments=segments),
        )

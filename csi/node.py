"""CSI Node service: stage (format guard + mount), publish (bind), stats, expand, info.

A publication ControllerPublishVolume made read-only (PUBLISH_READONLY; the publish
context says so) is staged and published read-only whatever the access mode asks.
Staging mounts the volume's filesystem once per staging path; publishing bind-mounts
from there, so read-only pods get a read-only view of a read-write staging mount.
SINGLE_NODE_MULTI_WRITER volumes may be published read-write at any number of targets;
a SINGLE_NODE_SINGLE_WRITER volume at one read-write target at a time (a second one is
FAILED_PRECONDITION, read-only targets beside it are fine).
Nomad stages one volume at several staging paths on a node (one per usage mode), so
nothing here assumes a single staging path per volume. Raw block volumes skip the
staging mount: publish binds the device node onto a file at the target path.

What a request may touch is confined. Staging and target paths must lie below one of the
configured roots (kubelet's directory by default, Nomad's ``stage_publish_base_dir`` when
the driver is told), resolved before the check. The device to format, mount or bind is
the one LINSTOR reports for the volume on this node, never a device path taken from the
request alone. Unstage, unpublish, expand and stats act only on a mount that belongs to
the volume: its device's filesystem, a bind of it, or a bind of the device node. When
LINSTOR no longer knows the volume, only a stale mount of a device that has vanished from
the node is undone (idempotent cleanup after a delete); a path with nothing mounted is
removed if it is an empty directory or file; a live mount of anything else is refused
and left alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from csi import capabilities, convert, keys
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.recent_stages import RecentStages
from csi.validation import PathRoots, require
from plugin import errors, node_qos
from plugin.keyed_locks import KeyedLocks
from plugin.node.unmounting import MountOwner
from plugin.params import placement
from plugin.params.filesystems import DEFAULT_FILESYSTEM
from plugin.params.values import split_commas
from plugin.volumes.node_reads import PendingRecord

if TYPE_CHECKING:
    from plugin.node.mounttable import MountEntry
    from plugin.node.ops import NodeOps
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)

Usage = csi_pb2.VolumeUsage


class NodeServicer(csi_pb2_grpc.NodeServicer):
    def __init__(
        self,
        service: VolumeService,
        nodeops: NodeOps,
        node_name: str,
        roots: PathRoots,
        max_volumes_per_node: int = keys.DEFAULT_MAX_VOLUMES_PER_NODE,
        inflight: KeyedLocks | None = None,
        recent: RecentStages | None = None,
    ) -> None:
        self._service = service
        self._ops = nodeops
        self._node = node_name
        self._roots = roots
        self._max_volumes = max_volumes_per_node
        self._inflight = inflight or KeyedLocks("volume path")
        self._recent = recent or RecentStages()
        self._topology: dict[str, str] | None = None
        self._topology_lock = threading.Lock()

    # ------------------------------------------------------------ helpers

    def _device(self, volume_id: str, found: str | None, publish_context: Mapping[str, str]) -> str:
        """The block device to stage or bind: LINSTOR's (``found``), whatever the publish context says."""
        if found is None:
            raise errors.FailedPrecondition(
                f"volume {volume_id} is not attached to node {self._node}; "
                "ControllerPublishVolume must run first"
            )
        given = publish_context.get(keys.DEVICE_PATH, "")
        if given and not self._ops.same_device(given, found):
            log.warning(
                "publish context of volume %s names %s, but LINSTOR reports %s on this node; using %s",
                volume_id,
                given,
                found,
                found,
            )
        return found

    def _stage_source(
        self, volume_id: str, volume_context: Mapping[str, str], block: bool
    ) -> tuple[PendingRecord, str | None, str]:
        """(the volume's record, the device LINSTOR reports here, the StorageClass ``mountOpts``).

        The options come from the volume context, and then the device is read first and
        the record meanwhile, while the stage looks at the device; only PVs without the
        context marker (made by LINBIT's driver before it wrote one, and static PVs) have
        them in LINSTOR (``Aux/csi-volume-annotations`` then), in the record, read at once
        with the device. NodePublishVolume uses both too (see :mod:`csi.recent_stages`).
        NOT_FOUND for an unknown volume.
        """
        if block or keys.USES_VOLUME_CONTEXT in volume_context:
            device, record = self._service.device_then_record(volume_id, self._node)
            return record, device, "" if block else volume_context.get(keys.MOUNT_OPTIONS, "")
        volume, device = self._service.volume_on(volume_id, self._node)
        return PendingRecord.of(volume), device, ",".join(volume.mount_opts)

    def _owner(self, volume_id: str, *, must_exist: bool) -> MountOwner:
        """Whose mounts a request may act on; an unknown volume owns only stale mounts of vanished devices."""
        return MountOwner(volume_id, self._service.device_on(volume_id, self._node, must_exist=must_exist))

    def _owned_mount(self, volume_id: str, path: str, what: str) -> MountOwner:
        """The owner, once ``path`` is known to show a mount of the volume; NOT_FOUND otherwise."""
        owner = self._owner(volume_id, must_exist=True)
        if not self._ops.path_exists(path):
            raise errors.NotFound(f"{what} {path} of volume {volume_id} does not exist")
        owned = self._ops.mount_owned_by(path, owner)
        if owned is None:
            raise errors.NotFound(f"{what} {path} is not a mounted path of volume {volume_id}")
        if not owned:
            raise errors.NotFound(f"{what} {path} holds a mount that is not volume {volume_id}'s")
        return owner

    def _unmount(self, volume_id: str, path: str, remove_target: bool) -> None:
        # Nothing mounted: no need to ask LINSTOR. A mount that appears meanwhile is
        # refused by the owner without a device unless its device is gone.
        mounted = self._ops.is_mounted(path)
        owner = self._owner(volume_id, must_exist=False) if mounted else MountOwner(volume_id, None)
        self._ops.unmount(path, remove_target=remove_target, owner=owner)

    # ------------------------------------------------------------ stage

    def NodeStageVolume(
        self, request: csi_pb2.NodeStageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeStageVolumeResponse:
        require(request, "volume_id")
        staging = self._roots.confine(request.staging_target_path, "staging_target_path")
        require(request, "volume_capability")
        access = capabilities.parse_supported(request.volume_capability)
        with self._inflight.hold(f"{request.volume_id}@{staging}", "NodeStageVolume"):
            self._recent.forget(staging)
            read_at = self._recent.now()
            record, found, stored = self._stage_source(
                request.volume_id, request.volume_context, access.block
            )
            try:
                device = self._device(request.volume_id, found, request.publish_context)
                if access.block:
                    self._ops.wait_for_device(device)
                else:
                    self._stage_filesystem(request, staging, access, device, stored, record)
            except Exception:
                record.result()  # the definition's answer decides first: an unknown volume is NOT_FOUND
                raise
            self._recent.remember(staging, request.volume_id, record.result(), found, read_at)
        return csi_pb2.NodeStageVolumeResponse()

    def _stage_filesystem(
        self,
        request: csi_pb2.NodeStageVolumeRequest,
        staging: str,
        access: capabilities.Access,
        device: str,
        stored: str,
        record: PendingRecord,
    ) -> None:
        """Mount the volume's filesystem at ``staging``, made first if the device is blank."""
        fs_type = access.fs_type or request.publish_context.get(keys.FS_TYPE) or DEFAULT_FILESYSTEM
        options = convert.merge_options(
            split_commas(stored),
            access.mount_flags,
            # restored snapshots carry their origin's xfs uuid; let both mount side by side
            ["nouuid"] if fs_type == "xfs" else [],
        )
        readonly = (
            access.read_only or convert.read_only_publication(request.publish_context) or "ro" in options
        )
        try:
            self._ops.stage(
                device,
                staging,
                fs_type,
                mount_opts=options,
                readonly=readonly,
                post_mount_xfs_opts=request.volume_context.get(keys.POST_MOUNT_XFS_OPTS, ""),
                # As LINBIT's driver since 1.10.1: a preen check before every fresh read-write mount.
                check_ext4=True,
                before_changes=record.wait,  # nothing changes before LINSTOR has said the volume is whole
            )
        except errors.FailedPrecondition as exc:
            if "mounted_from" not in exc.details:
                raise
            raise errors.AlreadyExists(
                f"{staging} already has another device mounted ({exc.details['mounted_from']})"
            ) from exc

    def NodeUnstageVolume(
        self, request: csi_pb2.NodeUnstageVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnstageVolumeResponse:
        require(request, "volume_id")
        staging = self._roots.confine(request.staging_target_path, "staging_target_path")
        with self._inflight.hold(f"{request.volume_id}@{staging}", "NodeUnstageVolume"):
            self._recent.forget(staging)
            # The CO created the staging directory and removes it; leave it empty.
            self._unmount(request.volume_id, staging, remove_target=False)
        return csi_pb2.NodeUnstageVolumeResponse()

    # ------------------------------------------------------------ publish

    def NodePublishVolume(
        self, request: csi_pb2.NodePublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodePublishVolumeResponse:
        require(request, "volume_id")
        target = self._roots.confine(request.target_path, "target_path")
        staging = self._roots.confine(request.staging_target_path, "staging_target_path")
        require(request, "volume_capability")
        access = capabilities.parse_supported(request.volume_capability)
        published_ro = convert.read_only_publication(request.publish_context)
        readonly = request.readonly or access.read_only or published_ro
        single_writer = access.mode == capabilities.Mode.SINGLE_NODE_SINGLE_WRITER and not readonly
        with self._inflight.hold(f"{request.volume_id}@{target}", "NodePublishVolume"):
            # The record for its IO limits; NOT_FOUND wins over "not staged". A stage
            # from this staging path has just read both (see csi.recent_stages).
            recalled = self._recent.recall(staging, request.volume_id)
            volume, found = recalled or self._service.volume_on(request.volume_id, self._node)
            if access.block:
                device = self._device(request.volume_id, found, request.publish_context)
                if single_writer:
                    self._refuse_second_writer(request.volume_id, device, target)
                self._ops.bind_block_device(device, target, readonly=readonly)
                node_qos.apply_for_publication(volume, device, request.volume_context)
                return csi_pb2.NodePublishVolumeResponse()
            table = self._ops.mount_table()  # one reading for every check below
            owner = MountOwner(request.volume_id, found)
            owned = self._ops.mount_owned_by(staging, owner, table)
            if recalled and not owned:
                # The staging path changed since the stage read: judge it on LINSTOR's answer now.
                volume, found = self._service.volume_on(request.volume_id, self._node)
                owner = MountOwner(request.volume_id, found)
                owned = self._ops.mount_owned_by(staging, owner, table)
            if owned is None:
                raise errors.FailedPrecondition(
                    f"volume {request.volume_id} is not staged at {staging}; NodeStageVolume must run first"
                )
            if not owned:
                raise errors.FailedPrecondition(
                    f"staging_target_path {staging} holds a mount that is not volume {request.volume_id}'s; "
                    "not publishing it"
                )
            if single_writer and owner.device:
                self._refuse_second_writer(request.volume_id, owner.device, target, staging, table)
            self._ops.bind_mount(staging, target, readonly=readonly, table=table)
            if owner.device:  # the device LINSTOR reports here, never one from the request
                node_qos.apply_for_publication(volume, owner.device, request.volume_context)
        return csi_pb2.NodePublishVolumeResponse()

    def _refuse_second_writer(
        self,
        volume_id: str,
        device: str,
        target: str,
        staging: str = "",
        table: list[MountEntry] | None = None,
    ) -> None:
        """SINGLE_NODE_SINGLE_WRITER: one read-write publication at a time, the spec's FAILED_PRECONDITION."""
        own = {self._ops.real_path(p) for p in (target, staging) if p}
        others = [m for m in self._ops.writable_mounts_of(device, table) if self._ops.real_path(m) not in own]
        if others:
            raise errors.FailedPrecondition(
                f"volume {volume_id} has access mode SINGLE_NODE_SINGLE_WRITER and is already published "
                f"read-write at {others[0]}; unpublish it there first"
            )

    def NodeUnpublishVolume(
        self, request: csi_pb2.NodeUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeUnpublishVolumeResponse:
        require(request, "volume_id")
        target = self._roots.confine(request.target_path, "target_path")
        with self._inflight.hold(f"{request.volume_id}@{target}", "NodeUnpublishVolume"):
            self._unmount(request.volume_id, target, remove_target=True)
        return csi_pb2.NodeUnpublishVolumeResponse()

    # ------------------------------------------------------------ stats and expansion

    def NodeGetVolumeStats(
        self, request: csi_pb2.NodeGetVolumeStatsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.NodeGetVolumeStatsResponse:
        require(request, "volume_id")
        path = self._roots.confine(request.volume_path, "volume_path")
        self._owned_mount(request.volume_id, path, "volume_path")
        condition = self._ops.condition(path)
        volume_condition = csi_pb2.VolumeCondition(abnormal=condition.abnormal, message=condition.message)
        if not self._ops.is_directory(path):  # a raw block volume bound onto a file
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
        path = self._roots.confine(request.volume_path, "volume_path")
        staging = (
            self._roots.confine(request.staging_target_path, "staging_target_path")
            if request.staging_target_path
            else ""
        )
        access = (
            capabilities.parse(request.volume_capability) if request.HasField("volume_capability") else None
        )
        with self._inflight.hold(f"{request.volume_id}@{path}", "NodeExpandVolume"):
            owner = self._owned_mount(request.volume_id, path, "volume_path")
            block = access.block if access is not None else not self._ops.is_directory(path)
            if block:
                return csi_pb2.NodeExpandVolumeResponse(capacity_bytes=self._ops.device_size_bytes(path))
            grow_at = staging if staging and self._ops.mount_owned_by(staging, owner) else path
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
        segments.setdefault(placement.HOSTNAME_KEY, self._node)
        return csi_pb2.NodeGetInfoResponse(
            node_id=self._node,
            max_volumes_per_node=self._max_volumes,
            accessible_topology=csi_pb2.Topology(segments=segments),
        )

"""CSI Controller service: volumes, attachments, snapshots, capacity.

Every handler follows the same three steps: check the request (before any lookup),
call the core's VolumeService, shape the answer. Errors are raised as the core's
typed errors and mapped to gRPC codes by the server interceptor.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import grpc

from csi import capabilities, convert, keys, publications
from csi.errors import OutOfRange
from csi.generated import csi_pb2, csi_pb2_grpc
from csi.list_pages import ListingPages
from csi.packed import PackedMessages, packed_in_key_order, repeated_field
from csi.validation import check_name, require, size_from_range
from plugin import errors
from plugin.backups import Backups, is_remote_snapshot_id, parse_snapshot_class
from plugin.keyed_locks import KeyedLocks
from plugin.list_collector import collector_paused_for_list
from plugin.names import resource_name_for
from plugin.params import qos
from plugin.params.csi import parse_csi_parameters, with_fs_type
from plugin.params.filesystems import DEFAULT_FILESYSTEM, minimum_size_bytes
from plugin.params.model import VolumeParams
from plugin.params.values import human_size
from plugin.remote_access import volume_accessible_segments
from plugin.volumes.modify import parse_mutable_parameters
from plugin.volumes.publications import Publishing

if TYPE_CHECKING:
    from plugin.models import Snapshot, Volume
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)

#: ListVolumesResponse's field number of its entries, for pages parsed from packed entries
_ENTRIES_FIELD = csi_pb2.ListVolumesResponse.DESCRIPTOR.fields_by_name["entries"].number


class ControllerServicer(csi_pb2_grpc.ControllerServicer):
    def __init__(
        self,
        service: VolumeService,
        inflight: KeyedLocks | None = None,
        max_volumes_per_node: int = keys.DEFAULT_MAX_VOLUMES_PER_NODE,
    ) -> None:
        self._service = service
        self._inflight = inflight or KeyedLocks("volume")
        self._limits = publications.AttachLimit(max_volumes_per_node)
        self._backups = Backups(service)
        #: kept listings hold each entry serialized (about 100 bytes), not the Volume it came
        #: from (about 1.4 KB in Python objects), all in one buffer: 10,000 volumes are about 1 MB
        self._volume_pages: ListingPages[bytes] = ListingPages("volume")

    def _params(self, parameters: Mapping[str, str]) -> VolumeParams:
        """StorageClass parameters, read with the driver's property namespace."""
        return parse_csi_parameters(dict(parameters), self._service.config.property_namespace)

    # ------------------------------------------------------------ volumes

    def CreateVolume(
        self, request: csi_pb2.CreateVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateVolumeResponse:
        check_name(request.name)
        access = capabilities.parse_all(request.volume_capabilities)
        changes = parse_mutable_parameters(request.mutable_parameters)
        params = self._params(request.parameters)
        block = access[0].block
        fs_type = (
            None
            if block
            else (next((a.fs_type for a in access if a.fs_type), "") or params.fs_type or DEFAULT_FILESYSTEM)
        )
        params = with_fs_type(params, fs_type, [flag for a in access for flag in a.mount_flags])
        for note in params.notes:
            log.info("CreateVolume %s: %s", request.name, note)
        capacity = request.capacity_range if request.HasField("capacity_range") else None
        source = (
            convert.source_argument(request.volume_content_source)
            if request.HasField("volume_content_source")
            else None
        )
        backup = (
            source.partition(":")[2] if source and is_remote_snapshot_id(source.partition(":")[2]) else ""
        )
        if source and (capacity is None or not (capacity.required_bytes or capacity.limit_bytes)):
            size = 0  # no size asked: the core makes it as big as the source
        else:
            size = size_from_range(capacity, minimum_size_bytes(fs_type))
            if source and not backup:
                self._check_source_fits(source, size)
        topology = (
            convert.topology_requirement(request.accessibility_requirements)
            if request.HasField("accessibility_requirements")
            else None
        )
        with self._inflight.hold(resource_name_for(request.name), "CreateVolume"):
            if backup:
                volume = self._backups.restore(
                    request.name, size, params, backup, topology, lambda s: _fits(s.size_bytes, size, backup)
                )
                if changes:  # a VolumeAttributesClass on a restored backup: applied like any modify
                    volume = self._service.modify_volume(volume.id, changes)
            elif changes:  # a VolumeAttributesClass: created, then its parameters applied
                volume = self._service.create_volume_with(
                    request.name, size, params, changes, source=source, topology=topology
                )
            else:
                volume = self._service.create_volume(
                    request.name, size, params, source=source, topology=topology
                )
        segments = volume_accessible_segments(
            self._service.client,
            volume,
            params.allow_remote_volume_access,
            params.remote_access_from_same,
            self._service.config.property_namespace,
        )
        return csi_pb2.CreateVolumeResponse(
            volume=convert.csi_volume(
                volume,
                convert.volume_context(params, volume),
                convert.accessible_topology(segments),
                request.volume_content_source if source else None,
            )
        )

    def _check_source_fits(self, source: str, size: int) -> None:
        """The spec's OUT_OF_RANGE for a volume asked smaller than its source."""
        kind, _, ref = source.partition(":")
        if kind == "snapshot":
            source_size = self._service.get_snapshot(ref).size_bytes
        else:
            source_size = self._service.get_volume(ref).size_bytes
        _fits(source_size, size, f"{kind} {ref}")

    def DeleteVolume(
        self, request: csi_pb2.DeleteVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.DeleteVolumeResponse:
        require(request, "volume_id")
        # An id we never issued is as gone as a deleted volume.
        with (
            self._inflight.hold(request.volume_id, "DeleteVolume"),
            contextlib.suppress(errors.NotFound, errors.InvalidArgument),
        ):
            self._service.delete_volume(request.volume_id)
        return csi_pb2.DeleteVolumeResponse()

    def ControllerPublishVolume(
        self, request: csi_pb2.ControllerPublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerPublishVolumeResponse:
        require(request, "volume_id", "node_id", "volume_capability")
        access = capabilities.parse_supported(request.volume_capability)
        token = publications.token(access.mode, request.readonly)
        with self._inflight.hold(request.volume_id, "ControllerPublishVolume"):
            volume, record = self._service.publish_target(request.volume_id, request.node_id)
            publications.check_compatible(
                volume.id, request.node_id, record.tokens, access.mode, request.readonly
            )
            with self._limits.hold(request.node_id):
                self._limits.check(self._service, request.volume_id, request.node_id)
                if capabilities.shared_block_writer(access, request.readonly):
                    self._service.admit_shared_writer(request.volume_id, request.node_id)
                attachment = self._service.attach(
                    request.volume_id, request.node_id, publish=Publishing(record, token)
                )
        publish_context = {
            keys.USES_PUBLISH_CONTEXT: "true",
            keys.DEVICE_PATH: attachment.device_path,
            keys.FS_TYPE: volume.fs_type or "",
        }
        if request.readonly:
            publish_context[keys.READ_ONLY] = "true"
        publish_context.update(qos.publish_context(volume.properties, attachment.device_path))
        return csi_pb2.ControllerPublishVolumeResponse(publish_context=publish_context)

    def ControllerUnpublishVolume(
        self, request: csi_pb2.ControllerUnpublishVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerUnpublishVolumeResponse:
        require(request, "volume_id")
        with self._inflight.hold(request.volume_id, "ControllerUnpublishVolume"):
            if request.node_id:
                nodes = [request.node_id]
            else:
                try:
                    volume = self._service.get_volume(request.volume_id)
                except (errors.NotFound, errors.InvalidArgument):
                    return csi_pb2.ControllerUnpublishVolumeResponse()
                nodes = [r.node for r in volume.replicas if r.published or (r.diskless and not r.tie_breaker)]
            read = None
            for node in nodes:
                # A missing volume or node is detached by definition.
                with contextlib.suppress(errors.NotFound, errors.InvalidArgument):
                    read = self._service.detach(request.volume_id, node, unpublish=True)
            with contextlib.suppress(errors.NotFound, errors.InvalidArgument):
                self._service.release_shared_writer(request.volume_id, read)
        return csi_pb2.ControllerUnpublishVolumeResponse()

    def ValidateVolumeCapabilities(
        self, request: csi_pb2.ValidateVolumeCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ValidateVolumeCapabilitiesResponse:
        require(request, "volume_id", "volume_capabilities")
        parsed = [
            capabilities.parse(c, f"volume_capabilities[{i}]")
            for i, c in enumerate(request.volume_capabilities)
        ]
        volume = self._service.get_volume(request.volume_id)
        problems = [r for r in (capabilities.unsupported_reason(a) for a in parsed) if r]
        if volume.fs_type is None and any(not a.block for a in parsed):
            problems.append(f"volume {volume.id} is a raw block volume and cannot be mounted as a filesystem")
        for access in parsed:
            if not access.block and access.fs_type and volume.fs_type and access.fs_type != volume.fs_type:
                problems.append(f"volume {volume.id} holds {volume.fs_type}, not {access.fs_type}")
        if request.parameters:
            try:
                self._params(request.parameters)
            except errors.InvalidArgument as exc:
                problems.append(str(exc))
        if request.mutable_parameters:
            try:
                parse_mutable_parameters(request.mutable_parameters)
            except errors.InvalidArgument as exc:
                problems.append(str(exc))
        if problems:
            return csi_pb2.ValidateVolumeCapabilitiesResponse(message="; ".join(problems))
        # Echo verbatim: Nomad compares fs_type and mount flags with what it asked.
        confirmed = csi_pb2.ValidateVolumeCapabilitiesResponse.Confirmed(
            volume_context=dict(request.volume_context),
            volume_capabilities=list(request.volume_capabilities),
            parameters=dict(request.parameters),
            mutable_parameters=dict(request.mutable_parameters),
        )
        return csi_pb2.ValidateVolumeCapabilitiesResponse(confirmed=confirmed)

    def ListVolumes(
        self, request: csi_pb2.ListVolumesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ListVolumesResponse:
        page, next_token = self._volume_pages.page(
            self._volume_entries, request.max_entries, request.starting_token
        )
        response = csi_pb2.ListVolumesResponse.FromString(repeated_field(_ENTRIES_FIELD, page))
        response.next_token = next_token
        return response

    def _volume_entries(self) -> PackedMessages:
        """Every volume's ListVolumes entry, serialized, in volume id order.

        Volumes are converted as LINSTOR's pages arrive, so no list of Volumes is ever built,
        and packed into one buffer (see :mod:`csi.packed`).
        """
        with collector_paused_for_list():
            return packed_in_key_order(
                (v.id, _list_entry(v).SerializeToString())
                for v in self._service.iter_volumes(with_replicas=True)
            )

    def ControllerGetVolume(
        self, request: csi_pb2.ControllerGetVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerGetVolumeResponse:
        require(request, "volume_id")
        volume = self._service.get_volume(request.volume_id)
        return csi_pb2.ControllerGetVolumeResponse(
            volume=convert.csi_volume(
                volume, convert.volume_context(None, volume), (), convert.content_source_of(volume)
            ),
            status=csi_pb2.ControllerGetVolumeResponse.VolumeStatus(
                published_node_ids=convert.published_nodes(volume), volume_condition=convert.condition(volume)
            ),
        )

    def GetCapacity(
        self, request: csi_pb2.GetCapacityRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetCapacityResponse:
        parsed = [
            capabilities.parse(c, f"volume_capabilities[{i}]")
            for i, c in enumerate(request.volume_capabilities)
        ]
        params = self._params(request.parameters)
        fs_type = next((a.fs_type for a in parsed if a.fs_type), "") or params.fs_type
        if any(a.block for a in parsed):
            fs_type = None
        minimum = csi_pb2.GetCapacityResponse(minimum_volume_size={"value": minimum_size_bytes(fs_type)})
        if any(capabilities.unsupported_reason(a) for a in parsed):
            return csi_pb2.GetCapacityResponse(
                available_capacity=0, minimum_volume_size=minimum.minimum_volume_size
            )
        segments = (
            dict(request.accessible_topology.segments) if request.HasField("accessible_topology") else None
        )
        available = self._service.capacity_bytes(params, segments)
        return csi_pb2.GetCapacityResponse(
            available_capacity=max(0, available), minimum_volume_size=minimum.minimum_volume_size
        )

    def ControllerGetCapabilities(
        self, request: csi_pb2.ControllerGetCapabilitiesRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerGetCapabilitiesResponse:
        return csi_pb2.ControllerGetCapabilitiesResponse(capabilities=capabilities.controller_capabilities())

    def ControllerExpandVolume(
        self, request: csi_pb2.ControllerExpandVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerExpandVolumeResponse:
        require(request, "volume_id", "capacity_range")
        rng = request.capacity_range
        if rng.required_bytes <= 0 and rng.limit_bytes <= 0:
            raise errors.InvalidArgument("capacity_range needs required_bytes or limit_bytes")
        access = (
            capabilities.parse_supported(request.volume_capability)
            if request.HasField("volume_capability")
            else None
        )
        target = rng.required_bytes or rng.limit_bytes
        if rng.limit_bytes and target > rng.limit_bytes:
            raise errors.InvalidArgument("capacity_range: required_bytes is larger than limit_bytes")
        with self._inflight.hold(request.volume_id, "ControllerExpandVolume"):
            volume = self._service.get_volume(request.volume_id)
            if volume.size_bytes < target:
                volume = self._service.expand_volume(request.volume_id, target)
        block = access.block if access is not None else volume.fs_type is None
        return csi_pb2.ControllerExpandVolumeResponse(
            capacity_bytes=volume.size_bytes, node_expansion_required=not block
        )

    def ControllerModifyVolume(
        self, request: csi_pb2.ControllerModifyVolumeRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ControllerModifyVolumeResponse:
        require(request, "volume_id", "mutable_parameters")
        changes = parse_mutable_parameters(request.mutable_parameters)
        with self._inflight.hold(request.volume_id, "ControllerModifyVolume"):
            self._service.modify_volume(request.volume_id, changes)
        return csi_pb2.ControllerModifyVolumeResponse()

    # ------------------------------------------------------------ snapshots

    def CreateSnapshot(
        self, request: csi_pb2.CreateSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.CreateSnapshotResponse:
        require(request, "source_volume_id")
        check_name(request.name)
        snapshot_class = parse_snapshot_class(request.parameters, request.secrets)
        with self._inflight.hold(request.source_volume_id, "CreateSnapshot"):
            if snapshot_class.remote:
                snapshot = self._backups.create(request.source_volume_id, request.name, snapshot_class)
            else:
                snapshot = self._service.create_snapshot(request.source_volume_id, request.name)
        return csi_pb2.CreateSnapshotResponse(snapshot=convert.csi_snapshot(snapshot))

    def DeleteSnapshot(
        self, request: csi_pb2.DeleteSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.DeleteSnapshotResponse:
        require(request, "snapshot_id")
        with (
            self._inflight.hold(f"snapshot:{request.snapshot_id}", "DeleteSnapshot"),
            contextlib.suppress(errors.NotFound, errors.InvalidArgument),
        ):
            if is_remote_snapshot_id(request.snapshot_id):
                self._backups.delete(request.snapshot_id)
            else:
                self._service.delete_snapshot(request.snapshot_id)
        return csi_pb2.DeleteSnapshotResponse()

    def ListSnapshots(
        self, request: csi_pb2.ListSnapshotsRequest, context: grpc.ServicerContext
    ) -> csi_pb2.ListSnapshotsResponse:
        if request.snapshot_id:
            try:
                snapshots = [self._get_snapshot(request.snapshot_id)]
            except (errors.NotFound, errors.InvalidArgument):
                snapshots = []
            if request.source_volume_id:
                snapshots = [s for s in snapshots if s.volume_id == request.source_volume_id]
        elif request.source_volume_id:
            try:
                local = self._service.list_snapshots(request.source_volume_id)
                snapshots = self._backups.list(local, request.source_volume_id)
            except (errors.NotFound, errors.InvalidArgument):
                snapshots = []
        else:
            snapshots = self._backups.list(self._service.list_snapshots())
        snapshots = sorted(snapshots, key=lambda s: s.id)
        page, next_token = convert.paginate(
            snapshots, request.max_entries, request.starting_token, "snapshot"
        )
        entries = [csi_pb2.ListSnapshotsResponse.Entry(snapshot=convert.csi_snapshot(s)) for s in page]
        return csi_pb2.ListSnapshotsResponse(entries=entries, next_token=next_token)

    def GetSnapshot(
        self, request: csi_pb2.GetSnapshotRequest, context: grpc.ServicerContext
    ) -> csi_pb2.GetSnapshotResponse:
        require(request, "snapshot_id")
        try:
            snapshot = self._get_snapshot(request.snapshot_id)
        except errors.InvalidArgument as exc:
            raise errors.NotFound(f"snapshot {request.snapshot_id!r} does not exist") from exc
        return csi_pb2.GetSnapshotResponse(snapshot=convert.csi_snapshot(snapshot))

    def _get_snapshot(self, snapshot_id: str) -> Snapshot:
        if is_remote_snapshot_id(snapshot_id):
            return self._backups.get(snapshot_id)
        return self._service.get_snapshot(snapshot_id)


def _fits(source_size: int, size: int, what: str) -> None:
    """The spec's OUT_OF_RANGE for a volume asked smaller than its source."""
    if size and size < source_size:
        raise OutOfRange(
            f"capacity_range asks for {human_size(size, exact=True)}, less than the "
            f"{human_size(source_size, exact=True)} of {what}"
        )


def _list_entry(volume: Volume) -> csi_pb2.ListVolumesResponse.Entry:
    return csi_pb2.ListVolumesResponse.Entry(
        volume=convert.csi_volume(
            volume, convert.volume_context(None, volume), (), convert.content_source_of(volume)
        ),
        status=csi_pb2.ListVolumesResponse.VolumeStatus(
            published_node_ids=convert.published_nodes(volume), volume_condition=convert.condition(volume)
        ),
    )

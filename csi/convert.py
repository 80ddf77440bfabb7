"""Shape core models into CSI messages (and CSI requests into core arguments).

Kept apart from the servicers so handlers stay a few lines and every answer for the
same volume is built the same way (the spec wants volume_context stable per volume).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from csi import keys
from csi.errors import Aborted
from csi.generated import csi_pb2
from plugin import remote_access
from plugin.errors import InvalidArgument
from plugin.models import Snapshot, TopologyRequirement, Volume
from plugin.params.model import VolumeParams
from plugin.volume_records import REMOTE_ACCESS
from plugin.volumes.group_snapshots import GroupSnapshot


def volume_context(params: VolumeParams | None, volume: Volume) -> dict[str, str]:
    """The context the official driver writes, so its PVs and ours read the same."""
    context = {keys.USES_VOLUME_CONTEXT: "true"}
    mount_opts = params.mount_opts if params is not None else volume.mount_opts
    if mount_opts:
        context[keys.MOUNT_OPTIONS] = ",".join(mount_opts)
    # Only what can be rebuilt from LINSTOR later, so ListVolumes and ControllerGetVolume
    # report the same context as CreateVolume did (the spec wants it stable per volume).
    if params is not None and params.post_mount_xfs_opts:
        context[keys.POST_MOUNT_XFS_OPTS] = params.post_mount_xfs_opts
    # as LINBIT's driver writes it: "true", "false" or the fromSame rules; kept on the volume
    policy = (
        remote_access.policy_text(params.allow_remote_volume_access, params.remote_access_from_same)
        if params is not None
        else volume.properties.get(REMOTE_ACCESS, "")
    )
    if policy:
        context[keys.REMOTE_ACCESS_POLICY] = policy
    return context


def accessible_topology(segments: Sequence[Mapping[str, str]]) -> list[csi_pb2.Topology]:
    """Where the volume can be used, from :mod:`plugin.remote_access`; no segments: anywhere."""
    return [csi_pb2.Topology(segments=dict(s)) for s in segments]


def csi_volume(
    volume: Volume,
    context: Mapping[str, str],
    topology: Sequence[csi_pb2.Topology] = (),
    content_source: csi_pb2.VolumeContentSource | None = None,
) -> csi_pb2.Volume:
    message = csi_pb2.Volume(
        capacity_bytes=volume.size_bytes,
        volume_id=volume.id,
        volume_context=dict(context),
        accessible_topology=list(topology),
    )
    if content_source is not None:
        message.content_source.CopyFrom(content_source)
    return message


def content_source_of(volume: Volume) -> csi_pb2.VolumeContentSource | None:
    """Rebuild the content source from what the core recorded (``snapshot:<id>``/``volume:<id>``)."""
    if not volume.source:
        return None
    kind, _, ref = volume.source.partition(":")
    if kind == "snapshot":
        return csi_pb2.VolumeContentSource(
            snapshot=csi_pb2.VolumeContentSource.SnapshotSource(snapshot_id=snapshot_id_for_csi(ref))
        )
    if kind == "volume":
        return csi_pb2.VolumeContentSource(volume=csi_pb2.VolumeContentSource.VolumeSource(volume_id=ref))
    return None


def source_argument(source: csi_pb2.VolumeContentSource) -> str:
    """The core's ``source=`` argument for a CreateVolume content source."""
    kind = source.WhichOneof("type")
    if kind == "snapshot":
        if not source.snapshot.snapshot_id:
            raise InvalidArgument("volume_content_source.snapshot.snapshot_id is required")
        return f"snapshot:{source.snapshot.snapshot_id}"
    if kind == "volume":
        if not source.volume.volume_id:
            raise InvalidArgument("volume_content_source.volume.volume_id is required")
        return f"volume:{source.volume.volume_id}"
    raise InvalidArgument("volume_content_source must name a snapshot or a volume")


def topology_requirement(requirement: csi_pb2.TopologyRequirement) -> TopologyRequirement | None:
    """None for an empty requirement (Nomad always sends one, possibly empty)."""
    requisite = tuple(dict(t.segments) for t in requirement.requisite)
    preferred = tuple(dict(t.segments) for t in requirement.preferred)
    if not requisite and not preferred:
        return None
    return TopologyRequirement(requisite=requisite, preferred=preferred)


def snapshot_id_for_csi(snapshot_id: str) -> str:
    """The official driver's id form ``InCluster:///<volume>/<snapshot>``."""
    if "://" in snapshot_id:
        return snapshot_id
    return f"{keys.SNAPSHOT_ID_SCHEME}/{snapshot_id}"


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def csi_snapshot(snapshot: Snapshot) -> csi_pb2.Snapshot:
    message = csi_pb2.Snapshot(
        size_bytes=snapshot.size_bytes,
        snapshot_id=snapshot_id_for_csi(snapshot.id),
        source_volume_id=snapshot.volume_id,
        ready_to_use=snapshot.ready,
        group_snapshot_id=snapshot.group_id or "",
    )
    if snapshot.created_at is not None:
        message.creation_time.CopyFrom(_timestamp(snapshot.created_at))
    return message


def csi_group_snapshot(group: GroupSnapshot) -> csi_pb2.VolumeGroupSnapshot:
    """A group and its members; every member names the group (the spec: same id inside the group)."""
    message = csi_pb2.VolumeGroupSnapshot(
        group_snapshot_id=group.id,
        snapshots=[csi_snapshot(replace(s, group_id=group.id)) for s in group.snapshots],
        ready_to_use=group.ready,
    )
    if group.created_at is not None:
        message.creation_time.CopyFrom(_timestamp(group.created_at))
    return message


def published_nodes(volume: Volume) -> list[str]:
    """Nodes the volume was published to by ControllerPublishVolume, not every replica.

    csi-attacher reads these as attachments; a replica on a hyper-converged node is none
    (why LINBIT's driver dropped the capability). Publications are recorded in LINSTOR.
    """
    return sorted({r.node for r in volume.replicas if r.published})


def read_only_publication(publish_context: Mapping[str, str]) -> bool:
    """Whether ControllerPublishVolume published this claim read-only (PUBLISH_READONLY)."""
    return publish_context.get(keys.READ_ONLY, "").lower() == "true"


def condition(volume: Volume) -> csi_pb2.VolumeCondition:
    if not volume.diskful_nodes:
        return csi_pb2.VolumeCondition(abnormal=True, message="the volume has no replica with data")
    return csi_pb2.VolumeCondition(abnormal=False, message="ok")


def paginate(
    items: Sequence[object], max_entries: int, token: str, what: str
) -> tuple[Sequence[object], str]:
    """Cut one page; the token is the offset of the next page."""
    if max_entries < 0:
        raise InvalidArgument("max_entries must not be negative")
    start = 0
    if token:
        if not token.isdigit() or int(token) > len(items):
            raise Aborted(
                f"starting_token {token!r} is not a valid {what} page token; start again without it"
            )
        start = int(token)
    end = len(items) if max_entries == 0 else min(len(items), start + max_entries)
    next_token = str(end) if end < len(items) else ""
    return items[start:end], next_token


def merge_options(*groups: Iterable[str]) -> list[str]:
    """Join option lists, keeping the first occurrence of each."""
    seen: dict[str, None] = {}
    for group in groups:
        for option in group:
            seen.setdefault(option, None)
    return list(seen)

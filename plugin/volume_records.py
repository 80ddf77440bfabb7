"""What the plugin stores in LINSTOR about a volume, and how LINSTOR's records become models.

The core keeps no database: the user's name and the parameters that decide idempotency
live in ``Aux/`` properties on the resource definition, so any replica of the plugin can
answer from LINSTOR alone. ``Aux/`` keys are always accepted by the controller.

Volumes made by LINBIT's driver are read too: where this plugin's own ``Aux/volume-plugin/``
record is missing, the legacy ``Aux/csi-volume-annotations`` JSON supplies the name,
creation time, filesystem and mkfs/mount options.

Completion marker: multi-step creations (restore, clone) first write
``CREATING=<own name>`` and only at the very end ``VOLUME_ID=<own name>``. Restore and
clone copy the source's properties, so the marker holds the *own* name: a copied
``VOLUME_ID`` of another volume never makes a half-made volume look finished.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from plugin import names
from plugin.errors import InvalidArgument
from plugin.linstor.records import DefinitionHead, Resource, ResourceDefinition, SnapshotDefinition
from plugin.models import Replica, Snapshot, Summary, Volume

AUX = "Aux/volume-plugin/"
NAME = AUX + "name"
VOLUME_ID = AUX + "volume-id"
CREATING = AUX + "creating"
REQUESTED_KIB = AUX + "requested-size-kib"
RESOURCE_GROUP = AUX + "resource-group"
FS_TYPE = AUX + "fs-type"
MKFS_OPTS = AUX + "mkfs-opts"
MOUNT_OPTS = AUX + "mount-opts"
CREATED_AT = AUX + "created-at"
SOURCE = AUX + "source"
ATTACHED_BY_PLUGIN = AUX + "attached-diskless"  # on a resource: attach made it, detach may remove it
PUBLISHED = AUX + "published"  # on a resource: how a front end published the volume there
ATTACH_PENDING = AUX + "attach-pending/"  # on a definition, + node: an attach lost its answer
SNAPSHOT_NAME = AUX + "snapshot-name"  # on a snapshot definition: the user's snapshot name
GROUP_SNAPSHOT = AUX + "group-snapshot"  # on a snapshot definition: the group snapshot it belongs to
REMOTE_ACCESS = AUX + "remote-access-policy"  # the allowRemoteVolumeAccess policy, as the context spells it

# What LINBIT's CSI driver wrote on a resource definition before its volume context (up to
# 0.16): a JSON record {name, id, createdBy, creationTime, sizeBytes, readonly, parameters}.
LEGACY_ANNOTATIONS = "Aux/csi-volume-annotations"
_LEGACY_PREFIX = "linstor.csi.linbit.com/"

FS_PROP = "FileSystem/Type"
MKFS_PROP = "FileSystem/MkfsParams"
BLOCK = "none"  # FS_TYPE value of a raw block volume
# The only FileSystem/Type values LINSTOR accepts; other filesystems (btrfs) live in FS_TYPE
# alone, and the node formats the blank device when it first stages it.
LINSTOR_MKFS_TYPES = ("ext4", "xfs")

SNAPSHOT_ID_SCHEME = "InCluster://"

# Extra values kept on the volume as ``Aux/<key>``: a front end's own origin markers (any
# plain key without a slash, which the front end alone interprets) and the CSI parameters
# the official driver keeps (``Aux/csi.storage.k8s.io/pvc/name``...); other namespaced
# parameters (e.g. secret references) are not stored.
KEPT_EXTRA_PREFIXES = (
    "csi.storage.k8s.io/pvc/",
    "csi.storage.k8s.io/pv/",
    "qos.linbit.com/",
)


@dataclass(frozen=True)
class Wanted:
    """A create request reduced to what is stored and compared for idempotency."""

    volume_id: str
    name: str
    size_kib: int
    resource_group: str
    fs_type: str | None
    mkfs_opts: str
    mount_opts: tuple[str, ...]
    source: str | None
    extra: tuple[tuple[str, str], ...] = ()
    remote_access: str = ""  # kept so every answer repeats the volume context of CreateVolume

    def aux_props(self, created_at: datetime) -> dict[str, str]:
        props = {
            NAME: self.name,
            REQUESTED_KIB: str(self.size_kib),
            RESOURCE_GROUP: self.resource_group,
            FS_TYPE: self.fs_type or BLOCK,
            CREATED_AT: created_at.isoformat(timespec="seconds"),
        }
        if self.mkfs_opts:
            props[MKFS_OPTS] = self.mkfs_opts
        if self.mount_opts:
            props[MOUNT_OPTS] = ",".join(self.mount_opts)
        if self.source:
            props[SOURCE] = self.source
        if self.remote_access:
            props[REMOTE_ACCESS] = self.remote_access
        for key, value in self.extra:
            if value and ("/" not in key or key.startswith(KEPT_EXTRA_PREFIXES)):
                props[f"Aux/{key}"] = value
        return props

    def filesystem_props(self) -> dict[str, str]:
        """``FileSystem/*`` make the satellite run mkfs on a new, blank volume, as linstor-csi relies on.

        Only for filesystems LINSTOR knows: it refuses any other ``FileSystem/Type``.
        """
        if self.fs_type not in LINSTOR_MKFS_TYPES:
            return {}
        props = {FS_PROP: self.fs_type}
        if self.mkfs_opts:
            props[MKFS_PROP] = self.mkfs_opts
        return props


def possible_volume_id(volume_id: str) -> bool:
    """Ids that cannot be LINSTOR names cannot exist; asking LINSTOR would only get a 500."""
    return names.is_valid_resource_name(volume_id)


def attach_pending_key(node: str) -> str:
    return ATTACH_PENDING + node


def stored_fs_type(
    rd_props: Mapping[str, str] | None, vd_props: Mapping[str, str] | None = None
) -> tuple[bool, str | None]:
    """(known, filesystem) of existing data: ``(True, None)`` is a raw block volume.

    ``FileSystem/Type`` (VD first, like LINSTOR's lookup) says what LINSTOR made; the
    plugin's own record covers block volumes, which carry no ``FileSystem/Type``.
    """
    for props in (vd_props or {}, rd_props or {}):
        if props.get(FS_PROP):
            return True, props[FS_PROP]
    recorded = (rd_props or {}).get(FS_TYPE)
    if recorded:
        return True, None if recorded == BLOCK else recorded
    return False, None


def is_complete(rd: ResourceDefinition | DefinitionHead) -> bool:
    """Not half-made by an interrupted restore or clone, and not being cloned or deleted."""
    if rd.flags & {"CLONING", "DELETE"}:
        return False
    return rd.props.get(CREATING) != rd.name


def _timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def replica_from(resource: Resource) -> Replica:
    vol0 = resource.volume(0)
    return Replica(
        node=resource.node,
        diskless=resource.diskless,
        in_use=resource.in_use,
        device_path=(vol0.device_path if vol0 else "") or None,
        tie_breaker=resource.tie_breaker,
        published=bool(resource.props.get(PUBLISHED)) or resource.props.get(ATTACHED_BY_PLUGIN) == "true",
    )


def legacy_annotations(props: Mapping[str, str]) -> dict[str, Any]:
    """LINBIT's legacy record of a volume, when there is one and this plugin's own is missing."""
    if NAME in props or LEGACY_ANNOTATIONS not in props:
        return {}
    try:
        record = json.loads(props[LEGACY_ANNOTATIONS])
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def legacy_parameter(record: Mapping[str, Any], *keys: str) -> str:
    """A StorageClass parameter of the legacy record, matched as LINBIT's driver does (case-insensitive)."""
    params = record.get("parameters")
    if not isinstance(params, dict):
        return ""
    wanted = {k.lower() for k in keys}
    for key, value in params.items():
        bare = str(key)
        if bare.lower().startswith(_LEGACY_PREFIX):
            bare = bare[len(_LEGACY_PREFIX) :]
        if bare.lower() in wanted and isinstance(value, str):
            return value
    return ""


def display_name(volume_id: str, props: Mapping[str, str], legacy: Mapping[str, Any]) -> str:
    """The user's name of a volume: this plugin's record, else the legacy one, else its id."""
    legacy_name = legacy.get("name")
    return props.get(NAME) or (legacy_name if isinstance(legacy_name, str) and legacy_name else volume_id)


def created_at_of(props: Mapping[str, str], legacy: Mapping[str, Any]) -> datetime | None:
    """When the volume was made, from this plugin's record or the legacy one."""
    return _timestamp(props.get(CREATED_AT) or str(legacy.get("creationTime") or ""))


def summary_from(head: DefinitionHead) -> Summary | None:
    """The :class:`Summary` of a resource definition (listed with its volume definitions).

    None when :func:`volume_from` would give none, or the definition is not complete; a
    fraction of :func:`volume_from`'s work, which lists of names repeat per volume.
    """
    if not head.has_volume_0 or not is_complete(head):
        return None
    props = head.props
    legacy = legacy_annotations(props)
    volume_id = head.name
    return Summary(volume_id, display_name(volume_id, props, legacy), created_at_of(props, legacy))


def volume_from(rd: ResourceDefinition, resources: Sequence[Resource] | None = None) -> Volume | None:
    """The :class:`Volume` of a resource definition listed with its volume definitions.

    None when it is not a volume (no volume 0, e.g. an RD kept only for its snapshots).
    """
    vd = rd.volume_definition(0)
    if vd is None:
        return None
    props = dict(rd.props)
    vd_props = vd.props
    legacy = legacy_annotations(props)
    fs_type = (
        vd_props.get(FS_PROP)
        or props.get(FS_PROP)
        or props.get(FS_TYPE)
        or (legacy and legacy_parameter(legacy, "filesystem", "fsType", "csi.storage.k8s.io/fstype"))
        or None
    )
    if fs_type == BLOCK:
        fs_type = None
    mkfs = (
        vd_props.get(MKFS_PROP)
        or props.get(MKFS_PROP)
        or props.get(MKFS_OPTS, "")
        or (legacy_parameter(legacy, "fsOpts") if legacy else "")
    )
    mount_text = props.get(MOUNT_OPTS, "") or (legacy_parameter(legacy, "mountOpts") if legacy else "")
    mount = tuple(o.strip() for o in mount_text.split(",") if o.strip()) if mount_text else ()
    replicas = tuple(replica_from(r) for r in resources) if resources else ()
    name = rd.name
    return Volume(
        id=name,
        name=display_name(name, props, legacy),
        size_bytes=vd.size_kib * 1024,
        resource_group=rd.resource_group or "DfltRscGrp",
        fs_type=fs_type,
        mkfs_opts=mkfs,
        mount_opts=mount,
        created_at=created_at_of(props, legacy),
        source=props.get(SOURCE),
        replicas=replicas,
        properties=props,
    )


def snapshot_id(volume_id: str, snapshot: str) -> str:
    """The official driver's form, so VolumeSnapshotContents carry over unchanged."""
    return f"{SNAPSHOT_ID_SCHEME}/{volume_id}/{snapshot}"


def parse_snapshot_id(value: str) -> tuple[str | None, str]:
    """``InCluster:///<vol>/<snap>`` or ``<vol>/<snap>`` -> (vol, snap); a bare name -> (None, name)."""
    text = value.strip()
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() != "incluster":
            raise InvalidArgument(
                f"snapshot {value!r} lives in a {scheme} remote; "
                "this plugin handles in-cluster snapshots only"
            )
        text = rest.lstrip("/")
        if "/" in text.strip("/") and text.strip("/").count("/") > 1:
            # InCluster:///<vol>/<volume number>/<snap> (consistency-group form): drop the number
            parts = text.strip("/").split("/")
            text = f"{parts[0]}/{parts[-1]}"
    parts = [p for p in text.split("/") if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1:
        return None, parts[0]
    raise InvalidArgument(f"{value!r} is not a snapshot id (expected InCluster:///<volume>/<snapshot>)")


def snapshot_from(snap: SnapshotDefinition) -> Snapshot:
    vds = snap.volume_definitions
    vd0 = snap.volume_definition(0) or (vds[0] if vds else None)
    stamps = snap.create_timestamps
    return Snapshot(
        id=snapshot_id(snap.resource_name, snap.name),
        name=snap.name,
        volume_id=snap.resource_name,
        size_bytes=(vd0.size_kib if vd0 else 0) * 1024,
        ready=snap.successful,
        created_at=datetime.fromtimestamp(min(stamps) / 1000, UTC) if stamps else None,
        group_id=snap.props.get(GROUP_SNAPSHOT) or None,
    )

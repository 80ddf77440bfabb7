"""The validated model of a volume request, and the vocabulary its fields use.

CSI StorageClass parameters (:mod:`plugin.params.csi`) and Docker ``-o`` options
(:mod:`plugin.params.docker`) are parsed into the same :class:`VolumeParams`; the volume
service only ever sees this model. Its field defaults are what LINSTOR operators expect,
so the names of the defaults (the diskless pool, the property namespace) live here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from plugin.params.filesystems import DEFAULT_FILESYSTEM

DEFAULT_DISKLESS_POOL = "DfltDisklessStorPool"
#: The official CSI driver's name, which namespaces its StorageClass parameters; defined here, in
#: a module the daemons load at start anyway, so the CSI driver's names need not load the key table.
CSI_NAMESPACE = "linstor.csi.linbit.com"


@dataclass(frozen=True)
class VolumeParams:
    """What a user asked for, validated. Field defaults are LINSTOR operator expectations."""

    # placement (these describe the resource group)
    resource_group: str | None = None  # explicit RG name; None: derived from the settings below
    place_count: int = 1
    storage_pools: tuple[str, ...] = ()
    diskless_storage_pool: str = DEFAULT_DISKLESS_POOL
    diskless_on_remaining: bool = False
    layer_list: tuple[str, ...] = ()  # () means LINSTOR's default stack (drbd, storage)
    replicas_on_same: tuple[str, ...] = ()
    replicas_on_different: tuple[str, ...] = ()
    x_replicas_on_different: tuple[tuple[str, int], ...] = ()
    do_not_place_with_regex: str = ""
    placement_policy: str = "autoplacetopology"
    allow_remote_volume_access: bool = True
    nodes: tuple[str, ...] = ()  # manual placement: diskful nodes
    client_nodes: tuple[str, ...] = ()  # manual placement: diskless nodes
    properties: tuple[tuple[str, str], ...] = ()  # LINSTOR properties passed through to the RG
    # filesystem
    fs_type: str | None = DEFAULT_FILESYSTEM  # None: raw block volume
    mkfs_opts: str = ""
    mount_opts: tuple[str, ...] = ()
    post_mount_xfs_opts: str = ""
    # sizes and capacity
    size_bytes: int | None = None  # Docker's size option; CSI takes the capacity range instead
    overprovision: float | None = None
    # naming
    use_pvc_name: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # informational, e.g. pvc name
    # remote access rules (official ``allowRemoteVolumeAccess`` list form): a diskless node
    # may access the volume when it shares every label of one rule with a replica's node.
    # Empty with allow_remote_volume_access=True means "from anywhere".
    remote_access_from_same: tuple[tuple[str, ...], ...] = ()
    # sentences about accepted keys that have no effect here; front ends log them
    notes: tuple[str, ...] = field(default=(), compare=False)


#: The official driver's default ``--property-namespace``.
DEFAULT_PROPERTY_NAMESPACE = "Aux"
AUX_PREFIX = "Aux/"
LAYERS = ("drbd", "luks", "nvme", "cache", "writecache", "bcache", "storage")
DISKLESS_LAYERS = frozenset({"drbd", "nvme"})
PLACEMENT_POLICIES = {
    "autoplacetopology": "AutoPlaceTopology",
    "autoplace": "AutoPlace",
    "followtopology": "FollowTopology",
    "manual": "Manual",
    "balanced": "Balanced",
}
# fields that only mean something when LINSTOR places replicas automatically
AUTOPLACE_ONLY_FIELDS = (
    "replicas_on_same",
    "replicas_on_different",
    "x_replicas_on_different",
    "do_not_place_with_regex",
    "diskless_on_remaining",
)


def in_namespace(key: str, namespace: str) -> str:
    """A node property name as LINSTOR knows it: bare names get ``<namespace>/``, ``Aux/...`` stays."""
    return key if key.startswith(AUX_PREFIX) else f"{namespace}/{key}"

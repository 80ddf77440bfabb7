"""One validated model for every way a user describes a volume.

CSI StorageClass parameters and Docker ``-o`` options are parsed into the same
:class:`VolumeParams`. The volume service only ever sees this model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_DISKLESS_POOL = "DfltDisklessStorPool"


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
    fs_type: str | None = "ext4"  # None: raw block volume
    mkfs_opts: str = ""
    mount_opts: tuple[str, ...] = ()
    post_mount_xfs_opts: str = ""
    # sizes and capacity
    size_bytes: int | None = None  # Docker's size option; CSI takes the capacity range instead
    overprovision: float | None = None
    # naming
    use_pvc_name: bool = False
    extra: dict[str, str] = field(default_factory=dict, compare=False)  # informational, e.g. pvc name

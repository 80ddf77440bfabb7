"""Data that crosses the boundary between the core and its front ends.

The front ends (CSI, Docker) only ever see these types, never raw LINSTOR JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple


@dataclass(frozen=True)
class Replica:
    """One resource of a volume on one node."""

    node: str
    diskless: bool
    in_use: bool
    device_path: str | None = None
    tie_breaker: bool = False
    published: bool = False  # a front end published the volume to this node (not merely a replica)


class Summary(NamedTuple):
    """What a list of volume names shows of a volume (Docker's ``volume ls``).

    A named tuple, not a :class:`Volume`: a list makes one per volume, and building a
    frozen dataclass with sizes, filesystem options and replicas is most of that cost;
    without the properties, a list of 10,000 holds none of LINSTOR's answer.
    """

    id: str
    name: str
    created_at: datetime | None


@dataclass(frozen=True)
class Volume:
    """A volume as the core knows it: a LINSTOR resource definition with volume 0.

    ``id`` is the resource definition name (the CSI volume id); ``name`` is the name the
    user gave (CSI name or Docker name), kept in an ``Aux/`` property.
    """

    id: str
    name: str
    size_bytes: int
    resource_group: str
    fs_type: str | None = None
    mkfs_opts: str = ""
    mount_opts: tuple[str, ...] = ()
    created_at: datetime | None = None
    source: str | None = None  # "snapshot:<snapshot id>" or "volume:<volume id>"
    replicas: tuple[Replica, ...] = ()
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def in_use_nodes(self) -> tuple[str, ...]:
        return tuple(r.node for r in self.replicas if r.in_use)

    @property
    def diskful_nodes(self) -> tuple[str, ...]:
        return tuple(r.node for r in self.replicas if not r.diskless)


@dataclass(frozen=True)
class Snapshot:
    """A LINSTOR snapshot of one volume. ``id`` is ``<volume id>/<snapshot name>``."""

    id: str
    name: str
    volume_id: str
    size_bytes: int
    ready: bool
    created_at: datetime | None = None
    group_id: str | None = None  # the group snapshot it was taken with, deleted only with it


@dataclass(frozen=True)
class Attachment:
    """Where a volume's block device is on a node after attach."""

    volume_id: str
    node: str
    device_path: str
    diskless: bool
    created_by_attach: bool


@dataclass(frozen=True)
class TopologyRequirement:
    """CSI accessibility requirements, as segment maps (``{"linbit.com/hostname": "n1"}``).

    An empty requirement means "anywhere" (Nomad sends it that way).
    """

    requisite: tuple[dict[str, str], ...] = ()
    preferred: tuple[dict[str, str], ...] = ()


@dataclass(frozen=True)
class VolumeStats:
    total_bytes: int
    used_bytes: int
    available_bytes: int
    total_inodes: int | None = None
    used_inodes: int | None = None
    available_inodes: int | None = None


@dataclass(frozen=True)
class VolumeCondition:
    abnormal: bool
    message: str

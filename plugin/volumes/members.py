"""Volumes that are one volume number of a shared LINSTOR resource, and their snapshots.

A consistency group (see :mod:`plugin.volumes.consistency_groups`) keeps several volumes as volume
numbers of one resource definition, as LINBIT's driver does: the volume id is
``<resource>/<volume number>`` (just ``<resource>`` for number 0) and a snapshot id is
``InCluster:///<resource>/<volume number>/<snapshot>``. One LINSTOR snapshot covers every
volume number of its resource, so the snapshot definition records which numbers it was
taken for (``Aux/volume-plugin/snapshot-volumes``); without that record (a plain volume, or a
snapshot LINBIT's driver took) it is the tagged members, else volume 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from plugin import names
from plugin import volume_records as rec
from plugin.errors import InvalidArgument, NotFound
from plugin.linstor.records import SnapshotDefinition, VolumeDefinition
from plugin.models import Snapshot

MAX_VOLUME_NUMBER = (1 << 16) - 1  # DRBD's volume numbers are 16 bits
# On a volume definition: the CSI name of the member it holds (LINBIT's driver's tag).
MEMBER_NAME = "Aux/csi-volume-name"
# On a snapshot definition: the volume numbers the snapshot stands for, comma separated.
SNAPSHOT_VOLUMES = rec.AUX + "snapshot-volumes"
# On a shared resource: a member's publications, under its volume number (number 0: the plain key).
PUBLISHED_PREFIX = rec.PUBLISHED + "/"


def split_volume_id(volume_id: str) -> tuple[str, int]:
    """(resource, volume number) of a volume id; NotFound for one that cannot exist."""
    resource, slash, number = volume_id.partition("/")
    if not names.is_valid_resource_name(resource) or (
        slash and not (number.isdigit() and int(number) <= MAX_VOLUME_NUMBER and str(int(number)) == number)
    ):
        raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)
    return resource, int(number) if slash else 0


def join_volume_id(resource: str, number: int) -> str:
    return resource if number == 0 else f"{resource}/{number}"


def publication_key(number: int) -> str:
    """The property on a shared resource that records one member's publications."""
    return rec.PUBLISHED if number == 0 else f"{PUBLISHED_PREFIX}{number}"


def split_snapshot_id(snapshot_id: str) -> tuple[str, int, str]:
    """(resource, volume number, snapshot) of an in-cluster snapshot id that names its volume."""
    text = snapshot_id.strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme.lower() != "incluster":
            raise InvalidArgument(f"snapshot {snapshot_id!r} is not an in-cluster snapshot of this driver")
    parts = [p for p in text.split("/") if p]
    if len(parts) == 3 and parts[1].isdigit():
        resource, number = split_volume_id(f"{parts[0]}/{parts[1]}")
        return resource, number, parts[2]
    if len(parts) == 2:
        return parts[0], 0, parts[1]
    raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)


def tagged_members(volume_definitions: Iterable[VolumeDefinition]) -> dict[int, str]:
    """{volume number: CSI name} of the tagged volume definitions (plain or snapshot ones)."""
    return {vd.number: vd.props[MEMBER_NAME] for vd in volume_definitions if vd.props.get(MEMBER_NAME)}


def snapshot_numbers(snap: SnapshotDefinition) -> list[int]:
    """The volume numbers a LINSTOR snapshot stands for."""
    recorded = snap.props.get(SNAPSHOT_VOLUMES, "")
    numbers = sorted({int(n) for n in recorded.split(",") if n.strip().isdigit()})
    if numbers:
        return numbers
    tagged = tagged_members(snap.volume_definitions)
    return sorted(tagged) or [0]


def member_snapshots(snap: SnapshotDefinition) -> list[Snapshot]:
    """One :class:`Snapshot` per volume number the LINSTOR snapshot stands for."""
    base = rec.snapshot_from(snap)
    numbers = snapshot_numbers(snap)
    if numbers == [0]:
        return [base]
    sizes = {vd.number: vd.size_kib for vd in snap.volume_definitions}
    out = []
    for number in numbers:
        volume_id = join_volume_id(base.volume_id, number)
        out.append(
            Snapshot(
                id=rec.snapshot_id(volume_id, base.name),
                name=base.name,
                volume_id=volume_id,
                size_bytes=sizes.get(number, 0) * 1024,
                ready=base.ready,
                created_at=base.created_at,
                group_id=base.group_id,
            )
        )
    return out

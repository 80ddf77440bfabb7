"""Group snapshots: one LINSTOR multi-snapshot over several volumes, taken together.

LINSTOR makes the snapshots of a multi-snapshot in one transaction and suspends I/O on
every resource before it takes any of them, so the members are crash-consistent with each
other. A group is named by the LINSTOR snapshot name its members share (the group id);
each member's snapshot definition carries that id in ``Aux/volume-plugin/group-snapshot``,
so a group is found from LINSTOR alone and a plain snapshot that happens to carry the same
name is never taken for a member. Members are ordinary snapshots for restore; they go with
their group only (the CSI spec binds a member that carries a group id to its group).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from plugin import names
from plugin import volume_records as rec
from plugin.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NodeOffline, NotFound
from plugin.linstor import retcodes as rc
from plugin.linstor.records import SnapshotDefinition
from plugin.models import Snapshot
from plugin.observability import log_fields
from plugin.volumes import members as vm

if TYPE_CHECKING:
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupSnapshot:
    """Snapshots of several volumes taken at one point in time."""

    id: str  # the LINSTOR snapshot name every member shares
    name: str  # the name the CO gave
    snapshots: tuple[Snapshot, ...]

    @property
    def ready(self) -> bool:
        return all(s.ready for s in self.snapshots)

    @property
    def created_at(self) -> datetime | None:
        stamps = [s.created_at for s in self.snapshots if s.created_at is not None]
        return min(stamps) if stamps else None


def member_key(snapshot_id: str) -> tuple[str, int, str]:
    """(volume, volume number, snapshot) of a snapshot id, case-folded as LINSTOR compares names.

    Accepts ``InCluster:///<rd>/<snap>``, ``InCluster:///<rd>/<vnr>/<snap>`` and the same
    without the scheme; anything else is not a snapshot id of this driver.
    """
    text = snapshot_id.strip()
    if "://" in text:
        scheme, text = text.split("://", 1)
        if scheme.lower() != "incluster":
            raise InvalidArgument(f"{snapshot_id!r} is not an in-cluster snapshot id of this driver")
    parts = [p for p in text.split("/") if p]
    if len(parts) == 2:
        return parts[0].lower(), 0, parts[1].lower()
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0].lower(), int(parts[1]), parts[2].lower()
    raise InvalidArgument(f"{snapshot_id!r} is not a snapshot id (expected InCluster:///<volume>/<snapshot>)")


def _listed(keys: Iterable[tuple[str, int, str]]) -> str:
    return ", ".join(sorted(f"{rd}/{snap}" if vnr == 0 else f"{rd}/{vnr}/{snap}" for rd, vnr, snap in keys))


class GroupSnapshots:
    """Create, read and delete group snapshots through the volume service's client."""

    def __init__(self, service: VolumeService) -> None:
        self._service = service
        self._client = service.client

    # ------------------------------------------------------------------ create

    def create(self, name: str, volume_ids: Sequence[str]) -> GroupSnapshot:
        """Snapshot all volumes together; the same name and volumes again return the group.

        Volumes of a consistency group share a resource: one LINSTOR snapshot of it stands for
        all of them, and records which volume numbers it was taken for.
        """
        if not name:
            raise InvalidArgument("a group snapshot needs a name")
        if not volume_ids or any(not v for v in volume_ids):
            raise InvalidArgument("source_volume_ids is required: at least one volume id, none empty")
        folded = [v.lower() for v in volume_ids]
        if len(set(folded)) != len(folded):
            twice = sorted({v for v in volume_ids if folded.count(v.lower()) > 1})
            raise InvalidArgument(f"source_volume_ids lists {', '.join(twice)} more than once")
        group_id = names.snapshot_name_for(name)
        with self._service.locks.lock(f"group-snapshot/{group_id}"):
            existing = self._named(group_id)
            if existing:
                return self._same_group(name, group_id, existing, volume_ids)
            by_resource: dict[str, list[int]] = {}
            for volume_id in volume_ids:
                self._service.get_volume(volume_id)  # NotFound names the missing one
                resource, number = vm.split_volume_id(volume_id)
                known = next((r for r in by_resource if r.lower() == resource.lower()), resource)
                by_resource.setdefault(known, []).append(number)
            self._take(name, group_id, by_resource)
            found = [s for s in self._client.view_snapshots(list(by_resource)) if _named(s, group_id)]
            return self._group(name, group_id, found)

    def _take(self, name: str, group_id: str, by_resource: dict[str, list[int]]) -> None:
        props = {rec.SNAPSHOT_NAME: name, rec.GROUP_SNAPSHOT: group_id}
        numbers = {
            r: {vm.SNAPSHOT_VOLUMES: ",".join(str(n) for n in sorted(v))} for r, v in by_resource.items()
        }
        try:
            self._client.create_snapshots([(r, group_id) for r in by_resource], props, numbers)
        except AlreadyExists as exc:
            if rc.code_of(exc) != rc.FAIL_EXISTS_SNAPSHOT_DFN:
                raise
            # Another driver replica took it meanwhile: it is the same group or a conflict.
            wanted = [vm.join_volume_id(r, n) for r, v in by_resource.items() for n in v]
            self._same_group(name, group_id, self._named(group_id), wanted)
        except NotFound as exc:
            if rc.code_of(exc) == rc.FAIL_NOT_FOUND_RSC:
                raise FailedPrecondition(
                    f"cannot take group snapshot {name!r}: a volume has no replica with data "
                    f"({exc.message}); nothing was taken",
                    **exc.details,
                ) from None
            raise NotFound(
                f"cannot take group snapshot {name!r}: {exc.message}; nothing was taken", **exc.details
            ) from None
        except NodeOffline as exc:
            raise NodeOffline(
                f"cannot take group snapshot {name!r}: a node holding a volume is offline ({exc.message})",
                **exc.details,
            ) from None
        log_fields(
            log, logging.INFO, "group snapshot taken", snapshot=group_id, volumes=",".join(by_resource)
        )

    def _same_group(
        self, name: str, group_id: str, existing: list[SnapshotDefinition], volume_ids: Sequence[str]
    ) -> GroupSnapshot:
        strangers = sorted(s.resource_name for s in existing if not _member_of(s, group_id))
        if strangers:
            raise AlreadyExists(
                f"snapshot name {name!r} is already used by a snapshot of volume {', '.join(strangers)}",
                snapshot=name,
            )
        have = {m.volume_id.lower() for s in existing for m in vm.member_snapshots(s)}
        want = {v.lower() for v in volume_ids}
        if have != want:
            raise AlreadyExists(
                f"group snapshot {name!r} already exists with volumes {', '.join(sorted(have))}, "
                f"not {', '.join(sorted(want))}",
                snapshot=name,
            )
        return self._group(name, group_id, existing)

    # ------------------------------------------------------------------ get, delete

    def get(self, group_id: str, snapshot_ids: Sequence[str]) -> GroupSnapshot:
        """The group, if ``snapshot_ids`` are exactly its members (the spec's mismatch check)."""
        given = self._keys(snapshot_ids)
        found = self._members(group_id)
        if not found:
            raise NotFound(f"group snapshot {group_id!r} does not exist", snapshot=group_id)
        group = self._group("", group_id, found)
        have = {member_key(s.id) for s in group.snapshots}
        if given != have:
            raise InvalidArgument(self._mismatch(group_id, given, have))
        return group

    def delete(self, group_id: str, snapshot_ids: Sequence[str]) -> None:
        """Delete every member; a missing group is fine. Members still present must all be listed."""
        given = self._keys(snapshot_ids)
        if not names.is_valid_snapshot_name(group_id):
            return
        with self._service.locks.lock(f"group-snapshot/{group_id}"):
            found = self._members(group_id)
            if not found:
                return  # gone, or never made: the spec's OK
            have = {member_key(m.id) for s in found for m in vm.member_snapshots(s)}
            # A retry after a partial delete lists members that are gone already: those are fine.
            foreign = {k for k in given if k[2] != group_id.lower()}
            if not have <= given or foreign:
                raise InvalidArgument(self._mismatch(group_id, given, have) + "; nothing was deleted")
            for snap in found:
                try:
                    self._client.delete_snapshot(snap.resource_name, snap.name)
                except NotFound:
                    continue
            log_fields(log, logging.INFO, "group snapshot deleted", snapshot=group_id)

    @staticmethod
    def _keys(snapshot_ids: Sequence[str]) -> set[tuple[str, int, str]]:
        if not snapshot_ids or any(not s for s in snapshot_ids):
            raise InvalidArgument("snapshot_ids is required: the ids of the group's member snapshots")
        return {member_key(s) for s in snapshot_ids}

    @staticmethod
    def _mismatch(group_id: str, given: set[tuple[str, int, str]], have: set[tuple[str, int, str]]) -> str:
        parts = []
        if have - given:
            parts.append(f"it lacks {_listed(have - given)}")
        if given - have:
            parts.append(f"{_listed(given - have)} {'is' if len(given - have) == 1 else 'are'} no member")
        return f"snapshot_ids do not match the members of group snapshot {group_id}: {'; '.join(parts)}"

    # ------------------------------------------------------------------ reading

    def _named(self, group_id: str) -> list[SnapshotDefinition]:
        return [s for s in self._client.view_snapshots() if _named(s, group_id)]

    def _members(self, group_id: str) -> list[SnapshotDefinition]:
        if not names.is_valid_snapshot_name(group_id):
            return []
        return [s for s in self._named(group_id) if _member_of(s, group_id)]

    @staticmethod
    def _group(name: str, group_id: str, found: list[SnapshotDefinition]) -> GroupSnapshot:
        snapshots = tuple(sorted((m for s in found for m in vm.member_snapshots(s)), key=lambda s: s.id))
        stored = next((s.props.get(rec.SNAPSHOT_NAME) for s in found), None)
        return GroupSnapshot(id=group_id, name=name or stored or group_id, snapshots=snapshots)


def _named(snap: SnapshotDefinition, group_id: str) -> bool:
    return snap.name.lower() == group_id.lower()


def _member_of(snap: SnapshotDefinition, group_id: str) -> bool:
    return snap.props.get(rec.GROUP_SNAPSHOT, "").lower() == group_id.lower()

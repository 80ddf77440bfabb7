"""Snapshots of volumes that share a resource: one LINSTOR snapshot stands for one volume number.

A CreateSnapshot of a consistency-group member snapshots its resource (LINSTOR snapshots
whole resources) and records the member's number on the snapshot definition, so its id,
size and restore are the member's (see :mod:`plugin.volumes.members`).
"""

from __future__ import annotations

from plugin import names
from plugin import volume_records as rec
from plugin.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from plugin.keyed_locks import KeyedLocks
from plugin.linstor.client import LinstorClient
from plugin.models import Snapshot
from plugin.volumes import members as vm
from plugin.volumes.consistency_groups import find_member
from plugin.volumes.reads import VolumeReads
from plugin.volumes.snapshots import VolumeSnapshots


class MemberSnapshots:
    """Snapshots of members, over the plain snapshots; held by the consistency-group service."""

    def __init__(
        self, client: LinstorClient, locks: KeyedLocks, reads: VolumeReads, snapshots: VolumeSnapshots
    ) -> None:
        self.client = client
        self.locks = locks
        self.reads = reads
        self.snapshots = snapshots

    def create_snapshot(self, volume_id: str, name: str) -> Snapshot:
        member = find_member(self.reads, volume_id)
        if member is None:
            return self.snapshots.create_snapshot(volume_id, name)
        if not name:
            raise InvalidArgument("a snapshot needs a name")
        resource, number, _rd = member
        snap_name = names.snapshot_name_for(name)
        with self.locks.lock(resource):
            for snap in self.client.view_snapshots():
                if snap.name.lower() != snap_name.lower():
                    continue
                taken = vm.member_snapshots(snap)
                same = snap.resource_name.lower() == resource.lower() and len(taken) == 1
                if same and taken[0].volume_id.lower() == volume_id.lower():
                    return taken[0]
                raise AlreadyExists(
                    f"snapshot name {name!r} is already used for volume {taken[0].volume_id}", snapshot=name
                )
            props = {rec.SNAPSHOT_NAME: name, vm.SNAPSHOT_VOLUMES: str(number)}
            try:
                self.client.create_snapshot(resource, snap_name, props)
            except NotFound as exc:
                raise FailedPrecondition(
                    f"volume {volume_id} has no replica with data to snapshot ({exc.message})", **exc.details
                ) from None
            return vm.member_snapshots(self.client.get_snapshot(resource, snap_name))[0]

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        try:
            resource, number, snap = vm.split_snapshot_id(snapshot_id)
        except NotFound:
            return self.snapshots.get_snapshot(snapshot_id)  # a bare name: looked up everywhere
        if not names.is_valid_resource_name(resource) or not names.is_valid_snapshot_name(snap):
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)
        try:
            found = self.client.get_snapshot(resource, snap)
        except NotFound:
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id) from None
        wanted = vm.join_volume_id(resource, number).lower()
        for member in vm.member_snapshots(found):
            if member.volume_id.lower() == wanted:
                return member
        raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshots.delete_snapshot(snapshot_id)

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        resources: tuple[str, ...] = ()
        if volume_id:
            try:
                resource, number = vm.split_volume_id(volume_id)
            except NotFound:
                return []
            resources = (resource,)
            wanted = vm.join_volume_id(resource, number).lower()
        try:
            found = self.client.view_snapshots(resources)
        except (NotFound, InvalidArgument):
            return []
        members = [m for s in found for m in vm.member_snapshots(s)]
        if volume_id:
            members = [m for m in members if m.volume_id.lower() == wanted]
        return members

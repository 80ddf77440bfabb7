"""Snapshots of plain volumes: take (idempotent by name), read, list and delete.

A snapshot of a volume is a LINSTOR snapshot of its resource definition; its CSI name is
kept on it, so any replica of the plugin finds it again. A member of a group snapshot
goes only with its group (:mod:`plugin.volumes.group_snapshots`).
"""

from __future__ import annotations

from plugin import names
from plugin import volume_records as rec
from plugin.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NodeOffline, NotFound
from plugin.keyed_locks import KeyedLocks
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.models import Snapshot
from plugin.volumes import sync_wait
from plugin.volumes.reads import VolumeReads, require_id
from plugin.volumes.settle import VolumeSettling


class VolumeSnapshots:
    """Snapshots for the volume service (a consistency-group service wraps them for members)."""

    def __init__(
        self, client: LinstorClient, locks: KeyedLocks, reads: VolumeReads, settling: VolumeSettling
    ) -> None:
        self.client = client
        self.locks = locks
        self.reads = reads
        self.settling = settling

    def create_snapshot(self, volume_id: str, name: str) -> Snapshot:
        """Snapshot a volume; the same name again returns it, on another volume it is AlreadyExists."""
        if not name:
            raise InvalidArgument("a snapshot needs a name")
        require_id(volume_id)
        snap_name = names.snapshot_name_for(name)
        with self.locks.lock(volume_id):
            for snap in self.client.view_snapshots():
                if snap.name.lower() != snap_name.lower():
                    continue
                if snap.resource_name.lower() == volume_id.lower():
                    return rec.snapshot_from(snap)
                raise AlreadyExists(
                    f"snapshot name {name!r} is already used for volume {snap.resource_name}",
                    snapshot=name,
                )
            try:
                sync_wait.retry_while_syncing(
                    lambda: self.client.create_snapshot(volume_id, snap_name, {rec.SNAPSHOT_NAME: name}),
                    f"snapshot volume {volume_id}",
                    lambda: self.settling.lagging(volume_id),
                )
            except AlreadyExists as exc:
                if rc.code_of(exc) != rc.FAIL_EXISTS_SNAPSHOT_DFN:
                    raise
            except NotFound as exc:
                if rc.code_of(exc) == rc.FAIL_NOT_FOUND_RSC:
                    raise self.settling.nothing_to_snapshot(volume_id, exc) from None
                raise NotFound(f"volume {volume_id} not found", volume=volume_id, **exc.details) from None
            except NodeOffline as exc:
                raise NodeOffline(
                    f"cannot snapshot volume {volume_id}: a node holding it is offline ({exc.message})",
                    **exc.details,
                ) from None
            return rec.snapshot_from(self.client.get_snapshot(volume_id, snap_name))

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            volume_id, snap = self.reads.resolve_snapshot(snapshot_id)
        except NotFound:
            return
        try:
            group = rec.snapshot_from(self.client.get_snapshot(volume_id, snap)).group_id
            if group:
                raise FailedPrecondition(
                    f"snapshot {snapshot_id!r} is a member of group snapshot {group}; "
                    "delete the group snapshot instead",
                    snapshot=snapshot_id,
                )
            self.client.delete_snapshot(volume_id, snap)
        except NotFound:
            return

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        volume_id, snap = self.reads.resolve_snapshot(snapshot_id)
        try:
            return rec.snapshot_from(self.client.get_snapshot(volume_id, snap))
        except NotFound:
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id) from None

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        try:
            found = self.client.view_snapshots([volume_id] if volume_id else ())
        except (NotFound, InvalidArgument):
            return []  # an unknown or impossible volume name has no snapshots
        return [rec.snapshot_from(s) for s in found]

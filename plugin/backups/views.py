"""Backups as the core's :class:`~plugin.models.Snapshot`, with their backup ids."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from plugin import volume_records as rec
from plugin.backups.ids import BackupId
from plugin.linstor.records import Backup, SnapshotDefinition
from plugin.models import Snapshot


def snapshot_of_local(backup_id: BackupId, snap: SnapshotDefinition, done: bool) -> Snapshot:
    """A backup whose local snapshot is still there: its size and time come from it."""
    return replace(rec.snapshot_from(snap), id=str(backup_id), ready=done)


def _time(backup: Backup) -> datetime | None:
    stamp = backup.started_ms or backup.finished_ms
    return datetime.fromtimestamp(stamp / 1000, UTC) if stamp > 0 else None


def snapshot_of_backup(backup_id: BackupId, backup: Backup) -> Snapshot:
    """A backup known only from the remote's list (size unknown there: 0, as CSI allows)."""
    return Snapshot(
        id=str(backup_id),
        name=backup_id.snapshot,
        volume_id=backup_id.volume_id,
        size_bytes=0,
        ready=backup.done,
        created_at=_time(backup),
    )

"""Backups as the core's :class:`~plugin.models.Snapshot`, with their backup ids."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from plugin import volume_records as rec
from plugin.backups.ids import BackupId
from plugin.linstor.records import SnapshotDefinition
from plugin.models import Snapshot


def snapshot_of_local(backup_id: BackupId, snap: SnapshotDefinition, done: bool) -> Snapshot:
    """A backup whose local snapshot is still there: its size and time come from it."""
    return replace(rec.snapshot_from(snap), id=str(backup_id), ready=done)


def _time(backup: Mapping[str, Any]) -> datetime | None:
    stamp = backup.get("start_timestamp") or backup.get("finished_timestamp")
    if isinstance(stamp, int | float) and stamp > 0:
        return datetime.fromtimestamp(stamp / 1000, UTC)
    return None


def snapshot_of_backup(backup_id: BackupId, backup: Mapping[str, Any]) -> Snapshot:
    """A backup known only from the remote's list (size unknown there: 0, as CSI allows)."""
    return Snapshot(
        id=str(backup_id),
        name=backup_id.snapshot,
        volume_id=backup_id.volume_id,
        size_bytes=0,
        ready=bool(backup.get("success")) and backup.get("restorable", True) is not False,
        created_at=_time(backup),
    )

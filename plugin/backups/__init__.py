"""Backups: snapshots shipped to an S3 bucket or to another LINSTOR cluster, and restored from there.

LINBIT's CSI driver offers them through VolumeSnapshotClasses with
``snap.linstor.csi.linbit.com/type: S3`` or ``Linstor``; this package reads the same keys
(:mod:`.snapshot_class`), writes the same snapshot ids (:mod:`.ids`), keeps the LINSTOR remote
in step with the class (:mod:`.remotes`), reads shipping state from LINSTOR's answers
(:mod:`.status`) and does the work (:mod:`.service`). LINSTOR itself ships and restores; the
plugin only asks, polls and cleans up, so no local state is kept.
"""

from plugin.backups.ids import BackupId, is_remote_snapshot_id, parse_backup_id
from plugin.backups.service import Backups
from plugin.backups.snapshot_class import SnapshotClass, parse_snapshot_class

__all__ = [
    "BackupId",
    "Backups",
    "SnapshotClass",
    "is_remote_snapshot_id",
    "parse_backup_id",
    "parse_snapshot_class",
]

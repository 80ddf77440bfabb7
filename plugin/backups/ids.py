"""Snapshot ids of backups, in LINBIT's driver's URL form: ``S3://<remote>/<volume>/<snapshot>``.

The host part is the LINSTOR remote, the path the source resource (optionally with its volume
number, ``/<volume>/0/<snapshot>``) and the snapshot name. In-cluster ids (``InCluster:///...``)
stay with :mod:`plugin.volume_records`.
"""

from __future__ import annotations

from dataclasses import dataclass

from plugin import names
from plugin.errors import InvalidArgument

SCHEMES = {"s3": "S3", "linstor": "Linstor"}


@dataclass(frozen=True)
class BackupId:
    kind: str  # "S3" or "Linstor"
    remote: str
    volume_id: str
    snapshot: str

    def __str__(self) -> str:
        return f"{self.kind}://{self.remote}/{self.volume_id}/{self.snapshot}"


def is_remote_snapshot_id(value: str) -> bool:
    scheme, sep, _ = value.strip().partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_backup_id(value: str) -> BackupId:
    """``S3://r/vol/snap`` or ``Linstor://r/vol[/0]/snap``; anything else is InvalidArgument."""
    scheme, sep, rest = value.strip().partition("://")
    kind = SCHEMES.get(scheme.lower()) if sep else None
    if kind is None:
        raise InvalidArgument(f"{value!r} is not a backup snapshot id (expected S3://... or Linstor://...)")
    parts = rest.split("/")
    if len(parts) == 4 and parts[2] == "0":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3 or not all(parts):
        raise InvalidArgument(
            f"{value!r} is not a backup snapshot id (expected {kind}://<remote>/<volume>/<snapshot>)"
        )
    remote, volume_id, snapshot = parts
    if not names.is_valid_resource_name(volume_id) or not names.is_valid_snapshot_name(snapshot):
        raise InvalidArgument(f"{value!r} names no valid LINSTOR volume and snapshot")
    return BackupId(kind, remote, volume_id, snapshot)

"""LINSTOR's names of backups and their S3 objects, and the shipping properties on snapshots.

- meta object   ``<rsc>_back_<YYYYMMDD_HHMMSS>[^<snap>].meta``
- volume object ``<rsc>_<vlmNr:05d>_back_<YYYYMMDD_HHMMSS>[^<snap>]``
- backup id     the meta object's name without ``.meta``

``^<snap>`` is left out when the snapshot is named like the backup id (``back_...``), as the
controller does. Times are UTC.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

PREFIX = "back_"
META_SUFFIX = ".meta"
_DATE = "%Y%m%d_%H%M%S"
META_RE = re.compile(
    r"^(?P<rsc>[a-zA-Z0-9_-]{2,48})_(?P<bid>back_[0-9]{8}_[0-9]{6})(?:|(?P<suffix>:?.+?))(?P<snap>\^.*)?\.meta$"
)
VOLUME_RE = re.compile(
    r"^(?P<rsc>[a-zA-Z0-9_-]{2,48})(?P<rsuffix>\..+)?_(?P<vlm>[0-9]{5})_(?P<bid>back_[0-9]{8}_[0-9]{6})"
    # As in the meta pattern, an empty suffix is tried first, so "^<snap>" is the snapshot name.
    r"(?:|(?P<suffix>:?.+?))(?P<snap>\^.*)?$"
)

#: snapshot definition property namespaces of a shipment
NAMESPC = "BackupShipping"
STATUS = "ShippingStatus"
START = "BackupStartTimestamp"
PREV = "SnapshotShippingNamePrev"
LAST_SNAPSHOT = "BackupLastSnapshot"
LAST_STARTED = "BackupLastStartedOrQueued"
SHIPPING, SUCCESS, FAILED, ABORTED = "Shipping", "Success", "Failed", "Aborted"


def source_key(remote: str, key: str) -> str:
    return f"{NAMESPC}/Source/{remote}/{key}"


def target_key(key: str) -> str:
    return f"{NAMESPC}/Target/{key}"


def stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime(_DATE)


def generated_snapshot_name(ms: int) -> str:
    """The name the controller gives a backup's snapshot when the client names none."""
    return PREFIX + stamp(ms)


def _ms(bid: str) -> int:
    when = datetime.strptime(bid[len(PREFIX) :], _DATE).replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


@dataclass(frozen=True)
class BackupName:
    rsc: str
    start_ms: int
    snap: str

    @property
    def bid(self) -> str:
        return PREFIX + stamp(self.start_ms)

    def _snap_part(self) -> str:
        return "" if not self.snap or self.snap == self.bid else "^" + self.snap

    @property
    def id(self) -> str:
        return f"{self.rsc}_{self.bid}{self._snap_part()}"

    @property
    def meta_key(self) -> str:
        return self.id + META_SUFFIX

    def volume_key(self, vlm_nr: int) -> str:
        return f"{self.rsc}_{vlm_nr:05d}_{self.bid}{self._snap_part()}"


def parse_meta(key: str) -> BackupName | None:
    m = META_RE.match(key)
    if m is None:
        return None
    snap = (m.group("snap") or "").removeprefix("^") or m.group("bid")
    return BackupName(m.group("rsc"), _ms(m.group("bid")), snap)


def parse_volume(key: str) -> tuple[BackupName, int] | None:
    if key.endswith(META_SUFFIX):
        return None
    m = VOLUME_RE.match(key)
    if m is None:
        return None
    snap = (m.group("snap") or "").removeprefix("^") or m.group("bid")
    return BackupName(m.group("rsc"), _ms(m.group("bid")), snap), int(m.group("vlm"))


def parse_id(backup_id: str) -> BackupName | None:
    """A backup id (with or without ``.meta``)."""
    key = backup_id if backup_id.endswith(META_SUFFIX) else backup_id + META_SUFFIX
    return parse_meta(key)

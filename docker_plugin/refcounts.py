"""Who holds which Docker volume mounted on this node, kept on disk so a restart loses nothing.

Docker sends ``Mount(name, ID)`` and ``Unmount(name, ID)`` and never repeats a Mount
after the plugin restarts; the same ID may be mounted twice (``docker cp`` on a running
container). So the plugin counts per (volume, ID), a multiset, and only releases the
volume when the total reaches zero. The counts are written atomically (temp file, fsync,
rename, fsync of the directory) after every change, and reconciled with the mount table
at start: a record whose staging mount is gone (the node rebooted) is dropped, or kept
as a pending detach when our attach made the local resource; a staging mount nobody
recorded (the state file was lost) is adopted with one anonymous holder that the next
Unmount of an unknown ID releases.

A record also remembers when it was last mounted (``acquired_at``, wall-clock time, so it
means something after a restart): counts that no container uses any more are only
released once they are older than a grace period (see :mod:`docker_plugin.recovery`).
A record whose volume is unmounted but whose detach could not reach LINSTOR stays, with
no holders and ``detach_pending`` set, until a later detach succeeds.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from docker_plugin.dirs import make_dirs

log = logging.getLogger(__name__)

STATE_VERSION = 1
ADOPTED_HOLDER = "adopted-at-start"


@dataclass
class MountRecord:
    """One volume staged on this node and the Docker mount IDs holding it."""

    resource: str  # LINSTOR resource definition name
    name: str  # the Docker volume name
    path: str  # staging mount point; containers get ``<path>/data``
    attached: bool = False  # our attach created the local resource: detach it when released
    holders: dict[str, int] = field(default_factory=dict)
    acquired_at: float = 0.0  # time.time() of the last Mount; 0 when unknown (older state files)
    detach_pending: bool = False  # unmounted, but the detach is still to be done

    @property
    def total(self) -> int:
        return sum(self.holders.values())

    def to_json(self) -> dict[str, object]:
        return {
            "resource": self.resource,
            "name": self.name,
            "path": self.path,
            "attached": self.attached,
            "holders": dict(self.holders),
            "acquired_at": self.acquired_at,
            "detach_pending": self.detach_pending,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> MountRecord:
        holders = data.get("holders") or {}
        if not isinstance(holders, dict):
            raise ValueError("holders must be an object")
        return cls(
            resource=str(data["resource"]),
            name=str(data.get("name", data["resource"])),
            path=str(data["path"]),
            attached=bool(data.get("attached", False)),
            holders={str(k): int(v) for k, v in holders.items() if int(v) > 0},
            acquired_at=float(data.get("acquired_at", 0.0) or 0.0),  # type: ignore[arg-type]
            detach_pending=bool(data.get("detach_pending", False)),
        )


class MountStore:
    """Thread-safe refcounts per (volume, ID), persisted to one JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._records: dict[str, MountRecord] = {}
        self._load()

    def _load(self) -> None:
        try:
            raw = self.path.read_text()
        except FileNotFoundError:
            return
        try:
            data = json.loads(raw)
            records = [MountRecord.from_json(r) for r in data.get("volumes", [])]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # A corrupt file must not keep the plugin from starting; the mount table still
            # tells us what is mounted, and reconcile() adopts it.
            log.error("ignoring unreadable mount state file %s: %s", self.path, exc)
            return
        self._records = {r.resource: r for r in records}

    def _save_locked(self) -> None:
        make_dirs(self.path.parent, 0o700)
        payload = {
            "version": STATE_VERSION,
            "volumes": [r.to_json() for r in sorted(self._records.values(), key=lambda r: r.resource)],
        }
        fd, tmp = tempfile.mkstemp(prefix=".mounts-", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(payload, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def get(self, resource: str) -> MountRecord | None:
        with self._lock:
            record = self._records.get(resource)
            return None if record is None else _copy(record)

    def records(self) -> list[MountRecord]:
        with self._lock:
            return [_copy(r) for r in self._records.values()]

    def mounted_count(self) -> int:
        with self._lock:
            return sum(1 for r in self._records.values() if r.total > 0)

    def acquire(self, record: MountRecord, mount_id: str) -> MountRecord:
        """Count one more Mount by ``mount_id``; ``record`` seeds the entry on first use."""
        with self._lock:
            current = self._records.get(record.resource)
            if current is None:
                current = _copy(record)
                current.holders = {}
                self._records[record.resource] = current
            else:
                # an adopted record learns its Docker name; a new attach must be undone later
                current.name = record.name
                current.path = record.path
                current.attached = current.attached or record.attached
            current.holders[mount_id] = current.holders.get(mount_id, 0) + 1
            current.acquired_at = time.time()
            current.detach_pending = False
            self._save_locked()
            return _copy(current)

    def release(self, resource: str, mount_id: str) -> MountRecord | None:
        """Count one Unmount; returns the record afterwards, or None if the volume is not held.

        An ID never seen releases the adopted holder, if there is one (see module doc);
        otherwise it changes nothing, since Docker may repeat an Unmount after a restart.
        """
        with self._lock:
            current = self._records.get(resource)
            if current is None:
                return None
            key = mount_id if mount_id in current.holders else None
            if key is None and ADOPTED_HOLDER in current.holders:
                key = ADOPTED_HOLDER
            if key is not None:
                current.holders[key] -= 1
                if current.holders[key] <= 0:
                    del current.holders[key]
                self._save_locked()
            return _copy(current)

    def drop_holders(self, resource: str, detach_pending: bool = False) -> dict[str, int]:
        """Forget every holder of a volume (stale counts, or an unmount awaiting its detach).

        Returns the holders dropped; ``detach_pending`` marks the record for a later detach.
        """
        with self._lock:
            current = self._records.get(resource)
            if current is None:
                return {}
            dropped, current.holders = current.holders, {}
            current.detach_pending = detach_pending
            self._save_locked()
            return dropped

    def forget(self, resource: str) -> None:
        """Drop a volume once it is unmounted (and detached)."""
        with self._lock:
            if self._records.pop(resource, None) is not None:
                self._save_locked()

    def reconcile(
        self, is_mounted: Callable[[str], bool], staged: Iterable[MountRecord] = ()
    ) -> list[MountRecord]:
        """Align the records with the mount table (see module doc); run once at start.

        Returns the records whose mount is gone; those our attach made stay as pending detaches.
        """
        gone: list[MountRecord] = []
        with self._lock:
            changed = False
            for resource, record in list(self._records.items()):
                if is_mounted(record.path):
                    continue
                gone.append(_copy(record))
                if record.attached:
                    if record.holders or not record.detach_pending:
                        log.info(
                            "%s is no longer mounted at %s; its detach is pending", record.name, record.path
                        )
                        record.holders = {}
                        record.detach_pending = True
                        changed = True
                else:
                    log.info("dropping mount record of %s: %s is no longer mounted", record.name, record.path)
                    del self._records[resource]
                    changed = True
            for found in staged:
                if found.resource not in self._records and is_mounted(found.path):
                    log.warning(
                        "adopting %s mounted at %s without a record; the next unknown Unmount releases it",
                        found.name,
                        found.path,
                    )
                    adopted = _copy(found)
                    adopted.holders = {ADOPTED_HOLDER: 1}
                    adopted.acquired_at = time.time()  # unknown: as young as can be, for the grace
                    self._records[found.resource] = adopted
                    changed = True
            if changed or not self.path.exists():
                self._save_locked()
        return gone


def _copy(record: MountRecord) -> MountRecord:
    return MountRecord(
        record.resource,
        record.name,
        record.path,
        record.attached,
        dict(record.holders),
        record.acquired_at,
        record.detach_pending,
    )

"""Backups of volumes to S3 and to another LINSTOR cluster: create, look up, list, delete.

LINSTOR ships in the background, so :meth:`Backups.create` is idempotent and cheap to call
again: it starts a shipment once and afterwards only reports how far it is (the CSI
snapshotter polls CreateSnapshot until ``ready_to_use``). Everything needed to answer later
lives in LINSTOR: the snapshot and its ``BackupShipping/*`` properties, the remote's backup
list, and for LINSTOR-to-LINSTOR shipments (whose snapshot LINSTOR names) the key-value
store ``csi-backup-mapping`` that LINBIT's driver uses too. A shipment that failed (for
example because the controller restarted during it) is cleaned up and started again by the
next call, so a backup is neither lost nor made twice. Restores live in :mod:`.restore`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from plugin import names
from plugin import volume_records as rec
from plugin.backups import status
from plugin.backups.ids import BackupId, parse_backup_id
from plugin.backups.remotes import ensure_remote
from plugin.backups.restore import BackupRestores
from plugin.backups.snapshot_class import SnapshotClass
from plugin.backups.views import snapshot_of_backup, snapshot_of_local
from plugin.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationFailed,
    VolumeError,
)
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Backup, SnapshotDefinition
from plugin.linstor.transport import Entries
from plugin.models import Snapshot
from plugin.observability import log_fields

if TYPE_CHECKING:
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)

KV_MAPPING = "csi-backup-mapping"  # LINBIT's name: CSI snapshot name -> "<resource>/<snapshot>"
#: What a local snapshot that is not there reads as: no shipment, no flags.
_NO_SNAPSHOT = SnapshotDefinition(name="", resource_name="")
PENDING = "pending"  # a mapping value before LINSTOR has named the shipped snapshot
TARGET_PREFIX = "backup-"  # LINBIT's driver: the target cluster's definition is backup-<source>


class Backups(BackupRestores):
    """Snapshots that live in a remote: S3 buckets and other LINSTOR clusters."""

    def __init__(self, service: VolumeService) -> None:
        self.service = service

    @property
    def client(self) -> LinstorClient:  # type: ignore[override]
        return self.service.client

    # ------------------------------------------------------------------ create

    def create(self, volume_id: str, name: str, cls: SnapshotClass) -> Snapshot:
        """Start the backup once; every call says whether it is done (``ready``)."""
        if not name:
            raise InvalidArgument("a snapshot needs a name")
        if not rec.possible_volume_id(volume_id):
            raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)
        snap_name = names.snapshot_name_for(name)
        with self.service.locks.lock(volume_id):
            if cls.type == "S3":
                return self._create_s3(volume_id, name, snap_name, cls)
            return self._create_linstor(volume_id, name, snap_name, cls)

    def _same_name_elsewhere(self, volume_id: str, snap_name: str, name: str) -> SnapshotDefinition | None:
        """The local snapshot of that name on this volume; on another volume it is AlreadyExists."""
        for snap in self.client.view_snapshots():
            if snap.name.lower() != snap_name.lower():
                continue
            if snap.resource_name.lower() == volume_id.lower():
                return snap
            raise AlreadyExists(
                f"snapshot name {name!r} is already used for volume {snap.resource_name}",
                snapshot=name,
            )
        return None

    def _create_s3(self, volume_id: str, name: str, snap_name: str, cls: SnapshotClass) -> Snapshot:
        backup_id = BackupId("S3", cls.remote_name, volume_id, snap_name)
        local = self._same_name_elsewhere(volume_id, snap_name, name)
        if local is not None:
            state = status.shipping_to(local, cls.remote_name)
            if state is status.Shipping.NONE:
                raise AlreadyExists(
                    f"snapshot {name!r} of volume {volume_id} exists as an in-cluster snapshot, "
                    f"not as a backup to {cls.remote_name}",
                    snapshot=name,
                )
            if state is not status.Shipping.FAILED:
                return self._finish(backup_id, local, state is status.Shipping.DONE, cls)
            # Interrupted (e.g. the controller restarted): ship the same point in time again.
            local = self._discard_failed(backup_id, local)
        ensure_remote(self.client, cls)
        shipped = self._remote_backup(backup_id) if local is None else None
        if shipped is not None and not shipped.failed:
            return snapshot_of_backup(backup_id, shipped)  # the local copy is gone (delete-local)
        if shipped is not None:
            self._delete_remote_entries(backup_id, [shipped.id])
        incremental = cls.allow_incremental and self._incremental_allowed(backup_id, cls)
        log_fields(
            log,
            logging.INFO,
            "backup started",
            volume=volume_id,
            snapshot=snap_name,
            remote=cls.remote_name,
            incremental=incremental,
        )
        try:
            self.client.create_backup(cls.remote_name, volume_id, snap_name, incremental)
        except NotFound as exc:
            raise NotFound(f"volume {volume_id} not found ({exc.message})", volume=volume_id) from None
        snap = self.client.get_snapshot(volume_id, snap_name)
        return self._finish(
            backup_id, snap, status.shipping_to(snap, cls.remote_name) is status.Shipping.DONE, cls
        )

    def _incremental_allowed(self, backup_id: BackupId, cls: SnapshotClass) -> bool:
        """A finished backup to base on, and a chain within max-increments and full-snapshot-after."""
        try:
            listed = self.client.list_backups(backup_id.remote, backup_id.volume_id)
        except NotFound:
            return False
        done = {
            b.id.removesuffix(".meta"): b
            for b in listed
            if b.done and b.origin_resource.lower() == backup_id.volume_id.lower()
        }
        if not done:
            return False
        increments, full_started = chain_of(done)
        if cls.max_increments and increments >= cls.max_increments:
            reason = f"{increments} incremental backups in a row (max-increments {cls.max_increments})"
        elif (
            cls.full_snapshot_after and full_started and time.time() - full_started >= cls.full_snapshot_after
        ):
            reason = (
                f"the chain's full backup is older than full-snapshot-after ({cls.full_snapshot_after:g}s)"
            )
        else:
            return True
        log_fields(log, logging.INFO, "next backup is a full one", volume=backup_id.volume_id, reason=reason)
        return False

    def _create_linstor(self, volume_id: str, name: str, snap_name: str, cls: SnapshotClass) -> Snapshot:
        mapping = self.client.get_key_value_store(KV_MAPPING)
        recorded = mapping.get(snap_name, "")
        if recorded and recorded != PENDING and "/" in recorded:
            source, local_name = recorded.split("/", 1)
            if source.lower() != volume_id.lower():
                raise AlreadyExists(
                    f"snapshot name {name!r} is already used for volume {source}", snapshot=name
                )
            backup_id = BackupId("Linstor", cls.remote_name, source, local_name)
            return self._linstor_state(backup_id, cls, snap_name, mapping)
        if recorded == PENDING:
            adopted = self._adopt_unnamed(volume_id, cls.remote_name, mapping)
            if adopted is not None:
                self._record(snap_name, f"{volume_id}/{adopted}")
                return self._linstor_state(
                    BackupId("Linstor", cls.remote_name, volume_id, adopted), cls, snap_name, mapping
                )
        ensure_remote(self.client, cls)
        self._record(snap_name, PENDING)  # a crash after the ship still finds its snapshot
        before = {s.name for s in self.client.list_snapshots(volume_id)}
        ship: dict[str, Any] = {
            "src_rsc_name": volume_id,
            "dst_rsc_name": TARGET_PREFIX + volume_id,
            "download_only": True,
        }
        if cls.linstor_target_storage_pool:
            ship["dst_stor_pool"] = cls.linstor_target_storage_pool
        log_fields(
            log, logging.INFO, "backup started", volume=volume_id, snapshot=snap_name, remote=cls.remote_name
        )
        try:
            entries = self.client.ship_backup(cls.remote_name, ship)
        except VolumeError:
            self._record(snap_name, None)  # nothing was shipped: no pending mark stays behind
            raise
        local_name = _snapshot_ref(entries) or self._new_snapshot(volume_id, before, cls.remote_name)
        if not local_name:
            raise VolumeError(f"LINSTOR started shipping volume {volume_id} but named no snapshot; retry")
        self._record(snap_name, f"{volume_id}/{local_name}")
        backup_id = BackupId("Linstor", cls.remote_name, volume_id, local_name)
        snap = self.client.get_snapshot(volume_id, local_name)
        return self._finish(
            backup_id, snap, status.shipping_to(snap, cls.remote_name) is status.Shipping.DONE, cls
        )

    def _linstor_state(
        self, backup_id: BackupId, cls: SnapshotClass, snap_name: str, mapping: Mapping[str, str]
    ) -> Snapshot:
        try:
            snap = self.client.get_snapshot(backup_id.volume_id, backup_id.snapshot)
        except NotFound:
            if mapping.get(_done_key(snap_name)):
                return Snapshot(str(backup_id), backup_id.snapshot, backup_id.volume_id, 0, True)
            self._record(snap_name, None)  # the shipment's snapshot vanished: start over next time
            raise FailedPrecondition(
                f"the shipment of {snap_name} to {cls.remote_name} lost its snapshot; retry to ship again"
            ) from None
        state = status.shipping_to(snap, cls.remote_name)
        if state is status.Shipping.FAILED:
            self._discard_failed(backup_id, snap)
            self._record(snap_name, None)
            raise FailedPrecondition(
                f"shipping volume {backup_id.volume_id} to {cls.remote_name} failed; retry to ship again"
            )
        done = state is status.Shipping.DONE
        if done:
            # The remote's name, so ListSnapshots can show it once delete-local removed the snapshot.
            self.client.modify_key_value_store(KV_MAPPING, {_done_key(snap_name): cls.remote_name})
        return self._finish(backup_id, snap, done, cls)

    def _record(self, snap_name: str, value: str | None) -> None:
        if value is None:
            self.client.modify_key_value_store(KV_MAPPING, delete_props=[snap_name, _done_key(snap_name)])
        else:
            self.client.modify_key_value_store(KV_MAPPING, {snap_name: value})

    def _adopt_unnamed(self, volume_id: str, remote: str, mapping: Mapping[str, str]) -> str | None:
        """After a crash between ship and record: the shipping snapshot no mapping claims."""
        claimed = {v.split("/", 1)[1].lower() for v in mapping.values() if "/" in v}
        candidates = [
            s
            for s in self.client.list_snapshots(volume_id)
            if status.shipping_to(s, remote) is not status.Shipping.NONE and s.name.lower() not in claimed
        ]
        return candidates[-1].name if candidates else None

    def _new_snapshot(self, volume_id: str, before: set[str], remote: str) -> str | None:
        for snap in self.client.list_snapshots(volume_id):
            if snap.name not in before and status.shipping_to(snap, remote) is not status.Shipping.NONE:
                return snap.name
        return None

    def _finish(
        self, backup_id: BackupId, snap: SnapshotDefinition, done: bool, cls: SnapshotClass
    ) -> Snapshot:
        """The answer; once shipped, the local snapshot goes if the class says delete-local."""
        if done and cls.delete_local:
            try:
                self.client.delete_snapshot(backup_id.volume_id, backup_id.snapshot)
            except NotFound:
                pass
            except VolumeError as exc:  # the backup is safe; the next call tries again
                log_fields(
                    log,
                    logging.WARNING,
                    "local copy of backup not deleted",
                    snapshot=str(backup_id),
                    error=exc.message,
                )
        return snapshot_of_local(backup_id, snap, done)

    def _discard_failed(self, backup_id: BackupId, snap: SnapshotDefinition) -> SnapshotDefinition | None:
        """A failed shipment: its remote leftovers go, so it can start again.

        A complete local snapshot is kept (and returned) so the retry ships the same point in
        time; a broken one is deleted too (None).
        """
        log_fields(log, logging.WARNING, "backup failed; starting again", snapshot=str(backup_id))
        if backup_id.kind == "S3":
            leftovers = [b.id for b in self._remote_entries(backup_id)]
            self._delete_remote_entries(backup_id, leftovers)
            if status.locally_ready(snap) and not status.local_failure(snap):
                return snap
        with contextlib.suppress(NotFound):
            self.client.delete_snapshot(backup_id.volume_id, backup_id.snapshot)
        return None

    # ------------------------------------------------------------------ remote lookups

    def _remote_entries(self, backup_id: BackupId) -> list[Backup]:
        try:
            listed = self.client.list_backups(backup_id.remote, backup_id.volume_id, backup_id.snapshot)
        except NotFound:
            return []  # no such remote: nothing is there
        return [
            b
            for b in listed
            if b.origin_resource.lower() == backup_id.volume_id.lower()
            and b.origin_snapshot.lower() == backup_id.snapshot.lower()
        ]

    def _remote_backup(self, backup_id: BackupId) -> Backup | None:
        entries = self._remote_entries(backup_id)
        done = [b for b in entries if b.done]
        return (done or entries or [None])[0]

    def _delete_remote_entries(self, backup_id: BackupId, ids: list[str]) -> None:
        for entry_id in ids:
            with contextlib.suppress(NotFound):
                self.client.delete_backup(backup_id.remote, entry_id)

    # ------------------------------------------------------------------ read, list, delete

    def get(self, snapshot_id: str) -> Snapshot:
        backup_id = parse_backup_id(snapshot_id)
        try:
            snap = self.client.get_snapshot(backup_id.volume_id, backup_id.snapshot)
        except (NotFound, InvalidArgument):
            snap = None
        if snap is not None:
            state = status.shipping_to(snap, backup_id.remote)
            return snapshot_of_local(backup_id, snap, state is status.Shipping.DONE)
        if backup_id.kind == "S3":
            found = self._remote_backup(backup_id)
            if found is not None:
                return snapshot_of_backup(backup_id, found)
        else:
            for key, value in self.client.get_key_value_store(KV_MAPPING).items():
                if value.lower() == f"{backup_id.volume_id}/{backup_id.snapshot}".lower():
                    done = self.client.get_key_value_store(KV_MAPPING).get(_done_key(key))
                    return Snapshot(str(backup_id), backup_id.snapshot, backup_id.volume_id, 0, bool(done))
        raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)

    def list(self, local: list[Snapshot], volume_id: str | None = None) -> list[Snapshot]:
        """The in-cluster snapshots with shipped ones under their backup ids, plus remote-only backups."""
        try:
            remotes = self.client.list_remotes()
        except NotFound:
            remotes = []
        linstor_remotes = [r.name for r in remotes if r.kind == "Linstor"]
        s3_remotes = [r.name for r in remotes if r.kind == "S3"]
        by_key: dict[tuple[str, str], Snapshot] = {}
        # A consistency-group member's id is <resource>/<volume number>: LINSTOR knows the resource.
        resource = volume_id.split("/", 1)[0] if volume_id else None
        raw = {
            (s.resource_name.lower(), s.name.lower()): s
            for s in self.client.view_snapshots([resource] if resource else ())
        }
        for snap in local:
            data = raw.get((snap.volume_id.split("/", 1)[0].lower(), snap.name.lower()), _NO_SNAPSHOT)
            shown = snap
            for remote in s3_remotes + linstor_remotes:
                state = status.shipping_to(data, remote)
                if state is not status.Shipping.NONE:
                    kind = "S3" if remote in s3_remotes else "Linstor"
                    shown = snapshot_of_local(
                        BackupId(kind, remote, snap.volume_id, snap.name), data, state is status.Shipping.DONE
                    )
                    break
            by_key[(snap.volume_id.lower(), snap.name.lower())] = shown
        for remote in s3_remotes:
            try:
                listed = self.client.list_backups(remote, resource or "")
            except (NotFound, InvalidArgument, OperationFailed) as exc:
                # One unreachable bucket must not hide every other snapshot.
                log_fields(
                    log, logging.WARNING, "backups of a remote not listed", remote=remote, error=exc.message
                )
                continue
            for backup in listed:
                source, snap_name = backup.origin_resource, backup.origin_snapshot
                if not source or not snap_name or (source.lower(), snap_name.lower()) in by_key:
                    continue
                if resource and source.lower() != resource.lower():
                    continue
                backup_id = BackupId("S3", remote, source, snap_name)
                by_key[(source.lower(), snap_name.lower())] = snapshot_of_backup(backup_id, backup)
        by_key.update(self._shipped_elsewhere(by_key, resource))
        return list(by_key.values())

    def _shipped_elsewhere(
        self, known: Mapping[tuple[str, str], Snapshot], volume_id: str | None
    ) -> dict[tuple[str, str], Snapshot]:
        """LINSTOR backups whose local snapshot is gone (delete-local), from the KV mapping."""
        found: dict[tuple[str, str], Snapshot] = {}
        mapping = self.client.get_key_value_store(KV_MAPPING)
        for key, remote in mapping.items():
            if not key.endswith(_done_key("")) or "/" not in mapping.get(key[: -len(_done_key(""))], ""):
                continue
            source, local_name = mapping[key[: -len(_done_key(""))]].split("/", 1)
            if (source.lower(), local_name.lower()) in known or (
                volume_id and source.lower() != volume_id.lower()
            ):
                continue
            backup_id = BackupId("Linstor", remote, source, local_name)
            found[(source.lower(), local_name.lower())] = Snapshot(
                str(backup_id), local_name, source, 0, True
            )
        return found

    def delete(self, snapshot_id: str) -> None:
        """Remove the backup and the local snapshot; a missing one is fine."""
        try:
            backup_id = parse_backup_id(snapshot_id)
        except InvalidArgument:
            return
        with self.service.locks.lock(backup_id.volume_id):
            self._abort_if_shipping(backup_id)
            if backup_id.kind == "S3":
                self._delete_s3(backup_id)
            else:
                self._delete_target_copy(backup_id)
                mapping = self.client.get_key_value_store(KV_MAPPING)
                for key, value in mapping.items():
                    if value.lower() == f"{backup_id.volume_id}/{backup_id.snapshot}".lower():
                        self._record(key, None)
            with contextlib.suppress(NotFound, InvalidArgument):
                self.client.delete_snapshot(backup_id.volume_id, backup_id.snapshot)

    def _abort_if_shipping(self, backup_id: BackupId) -> None:
        try:
            snap = self.client.get_snapshot(backup_id.volume_id, backup_id.snapshot)
        except (NotFound, InvalidArgument):
            return
        if status.shipping_to(snap, backup_id.remote) is status.Shipping.RUNNING:
            with contextlib.suppress(NotFound):
                self.client.abort_backup(backup_id.remote, backup_id.volume_id)

    def _delete_s3(self, backup_id: BackupId) -> None:
        try:
            listed = self.client.list_backups(backup_id.remote, backup_id.volume_id)
        except NotFound:
            return  # no remote: nothing to delete there
        entries = {b.id: b for b in listed}
        own = [
            i
            for i, b in entries.items()
            if b.origin_resource.lower() == backup_id.volume_id.lower()
            and b.origin_snapshot.lower() == backup_id.snapshot.lower()
        ]
        bases = {b.based_on.removesuffix(".meta") for b in entries.values()}
        needed = [i for i in own if i in bases or i.removesuffix(".meta") in bases]
        if needed:
            dependants = sorted(
                b.origin_snapshot
                for b in entries.values()
                if b.based_on.removesuffix(".meta") in {n.removesuffix(".meta") for n in needed}
            )
            raise FailedPrecondition(
                f"backup {backup_id} is the base of newer incremental backups ({', '.join(dependants)}); "
                "delete those first"
            )
        self._delete_remote_entries(backup_id, own)


def chain_of(done: Mapping[str, Backup]) -> tuple[int, float]:
    """Incremental backups since the last full one, and when that full one started (epoch seconds).

    The next incremental builds on the newest finished backup, so the chain is followed from it
    through its base back to a backup based on nothing.
    """
    newest = max(done.values(), key=lambda b: b.started_ms or b.finished_ms)
    increments, current = 0, newest
    while True:
        base = current.based_on.removesuffix(".meta")
        if not base or base not in done or increments > len(done):
            return increments, current.started_ms / 1000
        increments += 1
        current = done[base]


def _done_key(snap_name: str) -> str:
    return f"{snap_name}.shipped"


def _snapshot_ref(entries: Entries) -> str | None:
    return rc.object_ref(entries, "SnapshotName", "SnapDfn")

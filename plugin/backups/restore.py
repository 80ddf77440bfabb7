"""New volumes from backups, and the target cluster's copy of a LINSTOR-to-LINSTOR backup.

A restore needs the backup as a snapshot in this cluster; then it is an ordinary restore
(:mod:`plugin.volumes.copies`, with the same size rules). An ``S3://`` backup whose snapshot is
gone is first downloaded (``backups/restore`` with ``download_only``, as LINBIT's driver does)
into the source's name, used, and removed again. A ``Linstor://`` backup is restored in the
cluster that received it, from ``backup-<source>/<snapshot>`` (or in the source cluster while
the local snapshot is still there). The volume records the backup id as its source, so the
same request again returns it without another download.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from plugin import volume_records as rec
from plugin.backups import status
from plugin.backups.ids import BackupId, parse_backup_id
from plugin.errors import Busy, InvalidArgument, NotFound, OperationFailed, Unavailable, VolumeError
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import BackupInfo, Remote, SnapshotDefinition
from plugin.models import Snapshot, TopologyRequirement, Volume
from plugin.observability import log_fields
from plugin.params.model import VolumeParams

if TYPE_CHECKING:
    from plugin.volumes.service import VolumeService

log = logging.getLogger(__name__)

TARGET_PREFIX = "backup-"
POLL_MAX_SECONDS = 2.0


class BackupRestores:
    service: VolumeService
    client: LinstorClient

    def restore(
        self,
        name: str,
        size_bytes: int,
        params: VolumeParams,
        snapshot_id: str,
        topology: TopologyRequirement | None,
        check_size: Callable[[Snapshot], None],
    ) -> Volume:
        """Create volume ``name`` with the data of a backup (downloaded first when needed)."""
        backup_id = parse_backup_id(snapshot_id)
        source = f"snapshot:{backup_id}"
        volume_id = self.service.volume_id_for(name, params)
        rd = self.service.reads.read_rd(volume_id)
        if rd is not None and rec.is_complete(rd):
            # Made before (the same request again): no second download. A restore interrupted
            # right before it recorded the backup as its source still names the local copy.
            local_forms = {
                f"snapshot:{rec.snapshot_id(backup_id.volume_id, backup_id.snapshot)}",
                f"snapshot:{rec.snapshot_id(TARGET_PREFIX + backup_id.volume_id, backup_id.snapshot)}",
            }
            if rd.props.get(rec.SOURCE) in local_forms:
                self.client.modify_resource_definition(volume_id, override_props={rec.SOURCE: source})
            return self.service.create_volume(name, size_bytes, params, source=source, topology=topology)
        with self.service.locks.lock(f"backup:{backup_id}"):
            local_id, drop = self._local_copy(backup_id, params)
            try:
                check_size(self.service.get_snapshot(local_id))
                volume = self.service.create_volume(
                    name, size_bytes, params, source=f"snapshot:{local_id}", topology=topology
                )
                self.client.modify_resource_definition(volume.id, override_props={rec.SOURCE: source})
            finally:
                if drop is not None:
                    drop()
        return replace(volume, source=source)

    # ------------------------------------------------------------------ the local copy

    def _local_copy(self, backup_id: BackupId, params: VolumeParams) -> tuple[str, Callable[[], None] | None]:
        """The in-cluster snapshot id holding the backup, and how to remove it if it was downloaded."""
        snap = self._snapshot_or_none(backup_id.volume_id, backup_id.snapshot)
        if snap is not None and status.local_failure(snap):
            self._delete_quietly(backup_id.volume_id, backup_id.snapshot)
            snap = None
        if snap is not None:
            self._wait_ready(backup_id.volume_id, backup_id.snapshot)
            drop = None
            if backup_id.kind == "S3" and status.receiving(snap) is not status.Shipping.NONE:
                drop = self._dropper(backup_id, rd_existed=True)
            return rec.snapshot_id(backup_id.volume_id, backup_id.snapshot), drop
        if backup_id.kind == "Linstor":
            received = TARGET_PREFIX + backup_id.volume_id
            if self._snapshot_or_none(received, backup_id.snapshot) is None:
                raise NotFound(
                    f"snapshot {backup_id} is not in this cluster: a LINSTOR backup is restored in the "
                    f"cluster it was shipped to (as {received}/{backup_id.snapshot}), or here while its "
                    "local snapshot exists",
                    snapshot=str(backup_id),
                )
            self._wait_ready(received, backup_id.snapshot)
            return rec.snapshot_id(received, backup_id.snapshot), None
        rd_existed = self.service.reads.read_rd(backup_id.volume_id) is not None
        self._download(backup_id, params)
        drop = self._dropper(backup_id, rd_existed)
        try:
            self._wait_ready(backup_id.volume_id, backup_id.snapshot)
        except Busy:
            raise  # still downloading: the retry finds and waits for it
        except VolumeError:
            drop()
            raise
        return rec.snapshot_id(backup_id.volume_id, backup_id.snapshot), drop

    def _snapshot_or_none(self, volume_id: str, snapshot: str) -> SnapshotDefinition | None:
        try:
            return self.client.get_snapshot(volume_id, snapshot)
        except (NotFound, InvalidArgument):
            return None

    def _find_s3_backup(self, backup_id: BackupId) -> tuple[str, BackupInfo]:
        """The named remote first, then any other S3 remote (a restoring cluster may name it otherwise)."""
        try:
            return backup_id.remote, self.client.backup_info(
                backup_id.remote, backup_id.volume_id, backup_id.snapshot
            )
        except NotFound:
            pass
        for remote in self.client.list_remotes():
            name = remote.name
            if remote.kind != "S3" or name.lower() == backup_id.remote.lower():
                continue
            try:
                return name, self.client.backup_info(name, backup_id.volume_id, backup_id.snapshot)
            except NotFound:
                continue
        raise NotFound(
            f"snapshot {backup_id} not found: no S3 remote holds that backup", snapshot=str(backup_id)
        )

    def _download(self, backup_id: BackupId, params: VolumeParams) -> None:
        remote, info = self._find_s3_backup(backup_id)
        pools = info.storage_pools
        source_pool = pools[0] if pools else ""
        node, pool = self._download_place(source_pool, params)
        body: dict[str, Any] = {
            "target_rsc_name": backup_id.volume_id,
            "node_name": node,
            "download_only": True,
        }
        if info.latest:
            body["last_backup"] = info.latest
        else:
            body.update(src_rsc_name=backup_id.volume_id, src_snap_name=backup_id.snapshot)
        if source_pool and pool and pool != source_pool:
            body["stor_pool_map"] = {source_pool: pool}
        log_fields(log, logging.INFO, "downloading backup", snapshot=str(backup_id), node=node, pool=pool)
        self.client.restore_backup(remote, body)

    def _download_place(self, source_pool: str, params: VolumeParams) -> tuple[str, str]:
        pools = [
            p for p in self.client.list_storage_pools(storage_pools=params.storage_pools) if not p.diskless
        ]
        if not pools:
            raise NotFound("no storage pool in this cluster can take the backup's data")
        same = [p for p in pools if p.name.lower() == source_pool.lower()]
        chosen = max(same or pools, key=lambda p: p.free_kib or 0)
        return chosen.node, chosen.name

    def _wait_ready(self, volume_id: str, snapshot: str) -> None:
        deadline = time.monotonic() + max(self.service.config.read_timeout, 60.0)
        pause = 0.05
        while True:
            snap = self._snapshot_or_none(volume_id, snapshot)
            if snap is None:
                raise OperationFailed(f"snapshot {volume_id}/{snapshot} vanished while it was made")
            if status.locally_ready(snap):
                return
            if status.local_failure(snap):
                raise OperationFailed(
                    f"LINSTOR failed to bring snapshot {volume_id}/{snapshot} into this cluster; retry"
                )
            if time.monotonic() > deadline:
                raise Busy(f"snapshot {volume_id}/{snapshot} is still being downloaded; retry later")
            time.sleep(pause)
            pause = min(pause * 2, POLL_MAX_SECONDS)

    def _dropper(self, backup_id: BackupId, rd_existed: bool) -> Callable[[], None]:
        def drop() -> None:
            self._delete_quietly(backup_id.volume_id, backup_id.snapshot)
            if rd_existed:
                return
            rd = self.service.reads.read_rd(backup_id.volume_id)
            if rd is not None and not rd.props.get(rec.VOLUME_ID):
                try:
                    if not self.client.list_snapshots(backup_id.volume_id):
                        self.client.delete_resource_definition(backup_id.volume_id)
                except VolumeError as exc:
                    log_fields(
                        log,
                        logging.WARNING,
                        "download leftover not removed",
                        volume=backup_id.volume_id,
                        error=exc.message,
                    )

        return drop

    def _delete_quietly(self, volume_id: str, snapshot: str) -> None:
        try:
            self.client.delete_snapshot(volume_id, snapshot)
        except (NotFound, InvalidArgument):
            pass
        except VolumeError as exc:
            log_fields(
                log,
                logging.WARNING,
                "snapshot not removed",
                volume=volume_id,
                snapshot=snapshot,
                error=exc.message,
            )

    # ------------------------------------------------------------------ the target cluster's copy

    def _delete_target_copy(self, backup_id: BackupId) -> None:
        """Delete ``backup-<source>/<snapshot>`` in the cluster a LINSTOR remote points at."""
        url = _linstor_remote_url(self.client.list_remotes(), backup_id.remote)
        if url is None:
            return  # no remote of that name any more: nothing can be reached
        target = LinstorClient(replace(self.service.config, controllers=(url.rstrip("/"),)), retries=1)
        received = TARGET_PREFIX + backup_id.volume_id
        try:
            try:
                target.delete_snapshot(received, backup_id.snapshot)
            except (NotFound, InvalidArgument):
                return
            rd = target.list_resource_definitions([received], with_volume_definitions=False)
            if rd and not target.list_snapshots(received) and not target.view_resources([received]):
                target.delete_resource_definition(received)
        except Unavailable as exc:
            raise Unavailable(
                f"the target cluster of remote {backup_id.remote} ({url}) did not answer, so backup "
                f"{backup_id} could not be deleted there; retry later",
                **exc.details,
            ) from None
        finally:
            target.close()


def _linstor_remote_url(remotes: list[Remote], name: str) -> str | None:
    for remote in remotes:
        if remote.kind == "Linstor" and remote.name.lower() == name.lower() and remote.url:
            return remote.url
    return None

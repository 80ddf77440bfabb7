"""Volumes with content: restore from a snapshot and clone from another volume.

Both are several LINSTOR calls, so they follow one protocol (see
:mod:`plugin.volume_records`): the definition is made with the ``CREATING`` marker,
filled, grown and placed, and only then gets its name and ``VOLUME_ID`` marker. Any
failure on the way deletes what was made. A clone uses LINSTOR's clone endpoint and falls
back to a temporary snapshot plus restore where the pool cannot clone (FILE, FILE_THIN:
ret code 227).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import UTC, datetime

from plugin import names
from plugin import volume_records as rec
from plugin.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OperationFailed,
    VolumeError,
)
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import ResourceDefinition, SnapshotDefinition
from plugin.models import Volume
from plugin.observability import log_fields
from plugin.params.model import VolumeParams
from plugin.params.values import human_size
from plugin.progress import Operation, long_operation
from plugin.volumes import replica_states, sync_wait
from plugin.volumes.reads import VolumeReads

log = logging.getLogger(__name__)

CLONE_POLL_MAX_SECONDS = 2.0


class CloneRunning(Busy):
    """The caller's time ran out while LINSTOR still copies a clone; nothing is undone."""


class VolumeCopies:
    """Restore and clone for the volume service and the consistency groups."""

    def __init__(self, client: LinstorClient, reads: VolumeReads) -> None:
        self.client = client
        self.reads = reads

    def _start_multi_step(self, wanted: rec.Wanted) -> dict[str, str]:
        # No FileSystem/* here: the data comes from the source, and a satellite that saw
        # FileSystem/Type on a new volume without a filesystem signature would run mkfs.
        props = wanted.aux_props(datetime.now(UTC))
        props.pop(rec.NAME, None)
        props[rec.CREATING] = wanted.volume_id
        return props

    def _finish_multi_step(
        self, wanted: rec.Wanted, props: dict[str, str], params: VolumeParams, op: Operation
    ) -> None:
        """Grow, place the remaining replicas, then write the completion marker last."""
        op.detail = "placing the replicas"
        vd = self.client.get_volume_definition(wanted.volume_id)
        if vd.size_kib < wanted.size_kib:
            self.client.resize_volume_definition(wanted.volume_id, wanted.size_kib)
        self.client.autoplace(wanted.volume_id, diskless_on_remaining=params.diskless_on_remaining)
        final = {k: v for k, v in props.items() if k != rec.CREATING}
        final[rec.NAME] = wanted.name
        final[rec.VOLUME_ID] = wanted.volume_id
        # Pending-attach notes copied from the source are about the source's resources.
        self.client.modify_resource_definition(
            wanted.volume_id,
            override_props=final,
            delete_props=[rec.CREATING],
            delete_namespaces=[rec.ATTACH_PENDING.rstrip("/")],
        )

    def create_from_snapshot(
        self,
        wanted: rec.Wanted,
        params: VolumeParams,
        snapshot_ref: str,
        candidates: tuple[list[str], bool],
        any_size: bool,
    ) -> Volume:
        source_volume, snap_name = self.reads.resolve_snapshot(snapshot_ref)
        try:
            snap = self.client.get_snapshot(source_volume, snap_name)
        except NotFound:
            raise NotFound(f"snapshot {snapshot_ref!r} not found", snapshot=snapshot_ref) from None
        info = rec.snapshot_from(snap)
        if not info.ready:
            raise FailedPrecondition(f"snapshot {snapshot_ref!r} is not ready yet", snapshot=snapshot_ref)
        what = f"snapshot {snapshot_ref!r}"
        vds = snap.volume_definitions
        self.check_same_content(
            wanted,
            rec.stored_fs_type(snap.resource_definition_props, vds[0].props if vds else None),
            what,
        )
        wanted = self._fit_to_source(wanted, info.size_bytes // 1024, what, any_size)
        props = self._start_multi_step(wanted)
        self._create_definition(wanted, props)
        with long_operation(wanted.volume_id, f"restoring from snapshot {snapshot_ref}") as op:
            try:
                self.restore_into(wanted.volume_id, source_volume, snap_name, snap, candidates[0], op)
                self._finish_multi_step(wanted, props, params, op)
            except VolumeError:
                self.reads.remove_quietly(wanted.volume_id)
                raise
        return self.reads.read_back(wanted)

    @staticmethod
    def check_same_content(wanted: rec.Wanted, stored: tuple[bool, str | None], what: str) -> None:
        """A copy keeps its source's content: a raw volume never becomes a filesystem (whose
        node stage would format raw data) and a filesystem never changes its type."""
        known, fs_type = stored
        if known and fs_type != wanted.fs_type:
            raise InvalidArgument(
                f"{what} holds {f'a {fs_type} filesystem' if fs_type else 'a raw block volume'}, "
                f"but the new volume asks for {f'{wanted.fs_type}' if wanted.fs_type else 'raw block'}; "
                "request the same filesystem (or block mode) as the source"
            )

    @staticmethod
    def _fit_to_source(wanted: rec.Wanted, source_kib: int, what: str, any_size: bool) -> rec.Wanted:
        if any_size:
            return replace(wanted, size_kib=max(source_kib, wanted.size_kib))
        if wanted.size_kib < source_kib:
            raise InvalidArgument(
                f"requested size {human_size(wanted.size_kib * 1024, exact=True)} is smaller than {what} "
                f"({human_size(source_kib * 1024, exact=True)})"
            )
        return wanted

    def _create_definition(self, wanted: rec.Wanted, props: dict[str, str]) -> None:
        try:
            self.client.create_resource_definition(wanted.volume_id, wanted.resource_group, props)
        except AlreadyExists:
            raise Busy(f"volume {wanted.name!r} is being created by another request; retry") from None

    def restore_into(
        self,
        target: str,
        source_volume: str,
        snap_name: str,
        snap: SnapshotDefinition,
        preferred: list[str],
        op: Operation,
    ) -> None:
        op.detail = "restoring the snapshot's volume definition"
        try:
            self.client.restore_volume_definition(source_volume, snap_name, target)
        except AlreadyExists as exc:
            if rc.code_of(exc) != rc.FAIL_EXISTS_VLM_DFN:
                raise
        holders = list(snap.nodes)
        chosen = next((n for n in preferred if n in holders), holders[0] if holders else None)
        op.detail = f"copying the snapshot's data on {chosen or 'its node'}"
        try:
            self.client.restore_resource(source_volume, snap_name, target, [chosen] if chosen else [])
        except AlreadyExists as exc:
            if rc.code_of(exc) != rc.FAIL_EXISTS_RSC:
                raise

    def create_from_volume(
        self,
        wanted: rec.Wanted,
        params: VolumeParams,
        source_id: str,
        candidates: tuple[list[str], bool],
        any_size: bool,
    ) -> Volume:
        source = self.reads.read_rd(source_id)
        source_volume = rec.volume_from(source) if source else None
        if source is None or source_volume is None or not rec.is_complete(source):
            raise NotFound(f"source volume {source_id!r} not found", volume=source_id)
        vd0 = source.volume_definition(0)
        self.check_same_content(
            wanted,
            rec.stored_fs_type(source.props, vd0.props if vd0 else None),
            f"source volume {source_id!r}",
        )
        wanted = self._fit_to_source(
            wanted, source_volume.size_bytes // 1024, f"source volume {source_id!r}", any_size
        )
        props = self._start_multi_step(wanted)
        with long_operation(wanted.volume_id, f"cloning from volume {source_id}") as op:
            return self._clone(wanted, params, source, source_id, props, candidates, op)

    def _clone(
        self,
        wanted: rec.Wanted,
        params: VolumeParams,
        source: ResourceDefinition,
        source_id: str,
        props: dict[str, str],
        candidates: tuple[list[str], bool],
        op: Operation,
    ) -> Volume:
        op.detail = "asking LINSTOR to clone"
        try:
            sync_wait.retry_while_syncing(
                lambda: self.client.clone(
                    source.name,
                    wanted.volume_id,
                    resource_group=wanted.resource_group,
                    override_props=props,
                    delete_props=[rec.NAME, rec.VOLUME_ID],
                ),
                f"clone volume {source_id}",
                lambda: replica_states.not_up_to_date(self.client.view_resources([source_id])),
            )
        except InvalidArgument as exc:
            if rc.code_of(exc) != rc.FAIL_INVLD_PROVIDER:
                raise
            return self._clone_by_snapshot(wanted, params, source.name, props, candidates, op)
        except AlreadyExists:
            raise Busy(f"volume {wanted.name!r} is being created by another request; retry") from None
        return self._complete_clone(wanted, params, source.name, props, op)

    def _complete_clone(
        self, wanted: rec.Wanted, params: VolumeParams, source: str, props: dict[str, str], op: Operation
    ) -> Volume:
        """Wait for LINSTOR's copy, then finish; a copy still running is never removed."""
        try:
            self._wait_for_clone(source, wanted.volume_id, op)
            self._finish_multi_step(wanted, props, params, op)
        except CloneRunning:
            raise
        except VolumeError:
            self.reads.remove_quietly(wanted.volume_id)
            raise
        return self.reads.read_back(wanted)

    def resume_clone(self, rd: ResourceDefinition, wanted: rec.Wanted, params: VolumeParams) -> Volume | None:
        """A retried create finds its clone still copying (or copied, not yet finished): go on waiting."""
        props = rd.props
        kind, _, source = (wanted.source or "").partition(":")
        if kind != "volume" or not source:
            return None
        if props.get(rec.CREATING) != wanted.volume_id or props.get(rec.SOURCE) != wanted.source:
            return None
        own = {k: v for k, v in props.items() if k.startswith(rec.AUX)}
        with long_operation(wanted.volume_id, f"cloning from volume {source}") as op:
            return self._complete_clone(wanted, params, source, own, op)

    def _wait_for_clone(self, source: str, target: str, op: Operation) -> None:
        """Follow the copy while LINSTOR reports it running, as long as the caller waits.

        There is no timer of its own: a long copy is never given up (and removed) because a
        clock ran out. When the caller's deadline comes first, the answer says the copy is still
        running, and a retried create picks up the waiting where this one stopped.
        """
        end = time.monotonic() + sync_wait.time_left() - sync_wait.MARGIN_SECONDS
        pause = 0.05
        while True:
            status = self.client.clone_status(source, target)
            op.detail = f"LINSTOR clone status: {status}"
            if status == "COMPLETE":
                return
            if status == "FAILED":
                raise OperationFailed(f"LINSTOR failed to clone {source} into {target}")
            left = end - time.monotonic()
            if left <= 0:
                state = status or "no status"
                raise CloneRunning(
                    f"volume {target} is still being copied from {source} (LINSTOR reports {state}); "
                    "retry the request to keep waiting",
                    volume=target,
                )
            time.sleep(min(pause, left))
            pause = min(pause * 2, CLONE_POLL_MAX_SECONDS)

    def _clone_by_snapshot(
        self,
        wanted: rec.Wanted,
        params: VolumeParams,
        source: str,
        props: dict[str, str],
        candidates: tuple[list[str], bool],
        op: Operation,
    ) -> Volume:
        """The pool cannot clone (FILE/FILE_THIN): copy through a temporary snapshot instead."""
        op.detail = f"taking a temporary snapshot of {source}"
        temp = names.snapshot_name_for(f"clone-{wanted.volume_id}".lower())
        try:
            sync_wait.retry_while_syncing(
                lambda: self.client.create_snapshot(source, temp),
                f"clone volume {source}",
                lambda: replica_states.not_up_to_date(self.client.view_resources([source])),
            )
        except AlreadyExists as exc:
            if rc.code_of(exc) != rc.FAIL_EXISTS_SNAPSHOT_DFN:
                raise
        except NotFound as exc:
            raise FailedPrecondition(
                f"cannot clone {source}: it has no replica with data ({exc.message})", **exc.details
            ) from None
        try:
            snap = self.client.get_snapshot(source, temp)
            self._create_definition(wanted, props)
            try:
                self.restore_into(wanted.volume_id, source, temp, snap, candidates[0], op)
                self._finish_multi_step(wanted, props, params, op)
            except VolumeError:
                self.reads.remove_quietly(wanted.volume_id)
                raise
            return self.reads.read_back(wanted)
        finally:
            try:
                self.client.delete_snapshot(source, temp)
            except VolumeError as exc:
                log_fields(
                    log,
                    logging.ERROR,
                    "temporary snapshot not removed",
                    volume=source,
                    snapshot=temp,
                    error=str(exc),
                )

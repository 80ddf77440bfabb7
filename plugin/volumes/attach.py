"""Attach and detach: a volume's device on a node, and only the plugin's own resources removed.

Attaching where the node holds no resource makes a diskless one (``make-available``);
detach removes exactly those and never a replica with data or a diskless resource that
an operator or LINSTOR made. What tells them apart lives in LINSTOR, in two steps:

1. Before ``make-available``, the *intent* is written on the resource definition
   (``ATTACH_PENDING + node``). From then on, whatever resource appears on that node
   is the plugin's, even if the answer is lost, LINSTOR answers an error, or the
   process dies before step 2.
2. Once the resource exists, it gets the mark ``ATTACHED_BY_PLUGIN`` and the intent is
   cleared.

A retried attach or a detach that finds an unmarked diskless resource *and* the intent
claims it (step 2 again); a detach clears an intent left over by an interrupted attach,
so a diskless resource made later by someone else is never taken for the plugin's.
"""

from __future__ import annotations

import logging
from typing import Any

from plugin import names
from plugin import volume_records as rec
from plugin.errors import (
    FailedPrecondition,
    InUse,
    NodeOffline,
    NotFound,
    OperationFailed,
    Unavailable,
    VolumeError,
)
from plugin.keyed_locks import KeyedLocks
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Resource
from plugin.models import Attachment
from plugin.observability import log_fields
from plugin.volumes import in_use

log = logging.getLogger(__name__)

DISKLESS_FLAGS = frozenset({"DISKLESS", "DRBD_DISKLESS"})


def _require_id(volume_id: str) -> None:
    if not rec.possible_volume_id(volume_id):
        raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)


class VolumeAttachments:
    """Attach and detach, held by :class:`plugin.volumes.service.VolumeService`."""

    def __init__(self, client: LinstorClient, locks: KeyedLocks) -> None:
        self.client = client
        self.locks = locks

    def attach(self, volume_id: str, node: str, volume_number: int = 0) -> Attachment:
        """Make the volume available on a node: its replica there, else a diskless one.

        ``volume_number`` picks the device of a volume that shares its resource with others.
        """
        _require_id(volume_id)
        if not names.is_valid_node_name(node):
            raise NotFound(f"node {node!r} is not a LINSTOR node", node=node)
        with self.locks.lock(volume_id):
            resource: Resource | None
            try:
                resource = self.client.get_resource(volume_id, node)
            except NotFound:
                resource = None
            existed = resource is not None
            entries: list[dict[str, Any]] = []
            # A tie-breaker is reused, but LINSTOR must turn it into an ordinary diskless resource
            # first, or it may remove it as no longer needed. From then on it is the plugin's to
            # give back: detach deletes it with keep_tiebreaker, and LINSTOR takes it over again.
            tie_breaker = resource is not None and resource.tie_breaker
            ours_now = not existed or tie_breaker
            if ours_now:
                self._note_pending_attach(volume_id, node)
                try:
                    entries = self._make_available(volume_id, node)
                except VolumeError as exc:
                    self._settle_failed_attach(volume_id, node, exc)
                    raise
            try:
                volume = self.client.get_volume(volume_id, node, volume_number)
            except NotFound:
                raise NodeOffline(
                    f"volume {volume_id} was attached to {node}, but the node reports no device yet",
                    node=node,
                ) from None
            diskless = volume.diskless
            created = resource is not None and resource.props.get(rec.ATTACHED_BY_PLUGIN) == "true"
            if existed and diskless and not created:
                created = self._claim_pending_attach(volume_id, node)
            if ours_now:
                if diskless:
                    self._mark(volume_id, node)
                    created = True
                self._clear_pending_attach(volume_id, node)
            if rc.has_warning(entries, rc.WARN_NOT_CONNECTED):
                raise NodeOffline(
                    f"node {node} is offline; volume {volume_id} will be attached when it reconnects",
                    node=node,
                )
            device = volume.device_path
            if not device:
                raise OperationFailed(f"LINSTOR reports no device for volume {volume_id} on {node}")
            return Attachment(
                volume_id=volume_id,
                node=node,
                device_path=device,
                diskless=diskless,
                created_by_attach=created,
            )

    def _note_pending_attach(self, volume_id: str, node: str) -> None:
        """Step 1: before anything is made, the definition says a resource on ``node`` will be ours.

        A failure here is the attach's failure: nothing was made yet.
        """
        try:
            self.client.modify_resource_definition(volume_id, {rec.attach_pending_key(node): "true"})
        except NotFound as exc:
            raise NotFound(f"volume {volume_id} not found", volume=volume_id, **exc.details) from None

    def _mark(self, volume_id: str, node: str) -> None:
        self.client.modify_resource(volume_id, node, override_props={rec.ATTACHED_BY_PLUGIN: "true"})

    def _pending(self, volume_id: str, node: str) -> bool:
        """Whether an attach to ``node`` was started and not finished (a lost answer, an error, a crash)."""
        try:
            rd = self.client.get_resource_definition(volume_id)
        except NotFound:
            return False
        return rd.props.get(rec.attach_pending_key(node)) == "true"

    def _clear_pending_attach(self, volume_id: str, node: str, *, quiet: bool = True) -> None:
        """Drop the intent; when it cannot be dropped now, a later detach drops it."""
        try:
            self.client.modify_resource_definition(volume_id, delete_props=[rec.attach_pending_key(node)])
        except NotFound:
            return  # the volume is gone, and the note with it
        except VolumeError as exc:
            if not quiet:
                raise
            log_fields(
                log,
                logging.WARNING,
                "pending attach not cleared",
                volume=volume_id,
                node=node,
                error=str(exc),
            )

    def _settle_failed_attach(self, volume_id: str, node: str, exc: VolumeError) -> None:
        """make-available failed. With a LINSTOR answer it is over: if nothing was made, the
        intent goes; if a resource was made anyway, the intent stays so a retry or a detach
        takes it as the plugin's. Without an answer it may still land: the intent stays."""
        if isinstance(exc, Unavailable):
            return
        try:
            self.client.get_resource(volume_id, node)
        except NotFound:
            self._clear_pending_attach(volume_id, node)
        except VolumeError:
            return  # cannot tell now; the intent stays for a retry or a detach

    def _claim_pending_attach(self, volume_id: str, node: str) -> bool:
        """Whether an earlier, interrupted attach made this node's diskless resource (then mark it)."""
        if not self._pending(volume_id, node):
            return False
        self._mark(volume_id, node)
        self._clear_pending_attach(volume_id, node)
        return True

    def _make_available(self, volume_id: str, node: str) -> list[dict[str, Any]]:
        try:
            return self.client.make_available(volume_id, node, diskful=False)
        except NotFound as exc:
            if rc.code_of(exc) == rc.FAIL_NOT_FOUND_NODE:
                raise NotFound(f"node {node} is not a LINSTOR node", node=node, **exc.details) from None
            if rc.code_of(exc) == rc.FAIL_NOT_FOUND_STOR_POOL:
                raise self._no_pool_on(volume_id, node, exc) from None
            raise NotFound(f"volume {volume_id} not found", volume=volume_id, **exc.details) from None

    def _no_pool_on(self, volume_id: str, node: str, exc: NotFound) -> VolumeError:
        """LINSTOR found no pool on the node for the attach: an offline node, or one that does not fit."""
        try:
            status = self.client.get_node(node).connection_status
        except VolumeError:
            status = ""
        if status and status.upper() != "ONLINE":
            return NodeOffline(
                f"cannot attach volume {volume_id} to node {node}: the node is {status.lower()} in LINSTOR, "
                "so no resource can be placed there; bring its satellite back online and retry",
                node=node,
                **exc.details,
            )
        return FailedPrecondition(
            f"cannot attach volume {volume_id} to node {node}: LINSTOR finds no storage pool there that "
            f"fits the volume's resource group ({exc.message.rstrip('.')}); give the node a diskless "
            "storage pool or allow it in the resource group's placement",
            node=node,
            **exc.details,
        )

    def detach(self, volume_id: str, node: str) -> None:
        """Remove the diskless resource attach made; replicas with data are never touched."""
        if not rec.possible_volume_id(volume_id) or not names.is_valid_node_name(node):
            return
        with self.locks.lock(volume_id):
            pending = self._pending(volume_id, node)
            try:
                resource = self.client.get_resource(volume_id, node)
            except NotFound:
                resource = None
            if resource is not None:
                diskless = bool(resource.flags & DISKLESS_FLAGS)
                marked = resource.props.get(rec.ATTACHED_BY_PLUGIN) == "true"
                if resource.tie_breaker:
                    # Already given back (an earlier detach): LINSTOR's, not ours any more.
                    if marked:
                        self._unmark(volume_id, node)
                elif diskless and (marked or pending):
                    self._remove_attached(volume_id, node)
            if pending:
                self._clear_pending_attach(volume_id, node, quiet=False)

    def _unmark(self, volume_id: str, node: str) -> None:
        try:
            self.client.modify_resource(volume_id, node, delete_props=[rec.ATTACHED_BY_PLUGIN])
        except NotFound:
            return

    def _remove_attached(self, volume_id: str, node: str) -> None:
        """Delete the diskless resource attach made or reused; LINSTOR may keep it as tie-breaker
        (takeover), and then it is LINSTOR's again: the plugin's mark goes."""
        try:
            entries = in_use.retry_while_in_use(
                lambda: self.client.delete_resource(volume_id, node, keep_tiebreaker=True)
            )
        except NotFound:
            return
        except InUse as exc:
            raise InUse(
                f"volume {volume_id} is still in use on {node}; unmount it there first",
                nodes=[node],
                **exc.details,
            ) from None
        if rc.has_info(entries, rc.INFO_TIE_BREAKER_TAKEOVER):
            self._unmark(volume_id, node)

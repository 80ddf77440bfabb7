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
from plugin.linstor.records import Resource, ResourceDefinition
from plugin.models import Attachment
from plugin.observability import log_fields
from plugin.volumes import in_use
from plugin.volumes.publications import NodeRecord, Publishing

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

    def attach(
        self, volume_id: str, node: str, volume_number: int = 0, *, publish: Publishing | None = None
    ) -> Attachment:
        """Make the volume available on a node: its replica there, else a diskless one.

        ``volume_number`` picks the device of a volume that shares its resource with others.
        With ``publish`` the caller already read the node's resource (and holds the volume's
        in-flight lock), so it is not read again, and the publication is recorded once the
        attach succeeded: in the same write as the plugin's mark where both are due.
        """
        _require_id(volume_id)
        if not names.is_valid_node_name(node):
            raise NotFound(f"node {node!r} is not a LINSTOR node", node=node)
        with self.locks.lock(volume_id):
            resource: Resource | None
            if publish is not None:
                resource = publish.record.resource
            else:
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
            # A resource that was there already and read with its volumes (a publish reads the
            # volume's resources listed with them) names its device; a new one is asked for it.
            known = resource.exact_volume(volume_number) if resource is not None and not ours_now else None
            try:
                volume = (
                    known
                    if publish is not None and known is not None and known.device_path
                    else self.client.get_volume(volume_id, node, volume_number)
                )
            except NotFound:
                raise NodeOffline(
                    f"volume {volume_id} was attached to {node}, but the node reports no device yet",
                    node=node,
                ) from None
            diskless = volume.diskless
            offline = rc.has_warning(entries, rc.WARN_NOT_CONNECTED)
            device = volume.device_path
            # The publication is recorded only for an attach that succeeds, as before it was merged.
            record = publish.props() if publish is not None and not offline and device else {}
            created = resource is not None and resource.props.get(rec.ATTACHED_BY_PLUGIN) == "true"
            if existed and diskless and not created:
                created = self._claim_pending_attach(volume_id, node, record)
                if created:
                    record = {}
            if ours_now:
                if diskless:
                    self._mark(volume_id, node, record)
                    record = {}
                    created = True
                self._clear_pending_attach(volume_id, node)
            if offline:
                raise NodeOffline(
                    f"node {node} is offline; volume {volume_id} will be attached when it reconnects",
                    node=node,
                )
            if not device:
                raise OperationFailed(f"LINSTOR reports no device for volume {volume_id} on {node}")
            if record:
                self.client.modify_resource(volume_id, node, override_props=record)
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

    def _mark(self, volume_id: str, node: str, record: dict[str, str] | None = None) -> None:
        """Step 2's mark, with a publication record in the same write when one is due."""
        props = {rec.ATTACHED_BY_PLUGIN: "true", **(record or {})}
        self.client.modify_resource(volume_id, node, override_props=props)

    def _pending(self, volume_id: str, node: str) -> bool:
        """Whether an attach to ``node`` was started and not finished (a lost answer, an error, a crash)."""
        rd = self._definition(volume_id)
        return rd is not None and rd.props.get(rec.attach_pending_key(node)) == "true"

    def _definition(self, volume_id: str) -> ResourceDefinition | None:
        try:
            return self.client.get_resource_definition(volume_id)
        except NotFound:
            return None

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

    def _claim_pending_attach(self, volume_id: str, node: str, record: dict[str, str]) -> bool:
        """Whether an earlier, interrupted attach made this node's diskless resource (then mark it)."""
        if not self._pending(volume_id, node):
            return False
        self._mark(volume_id, node, record)
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

    def detach(
        self, volume_id: str, node: str, *, unpublish: bool = False, seen: NodeRecord | None = None
    ) -> ResourceDefinition | None:
        """Remove the diskless resource attach made; replicas with data are never touched.

        With ``unpublish`` the publication record goes as well: a resource that goes takes it
        along, one that stays loses it in one write. ``seen`` is the node's resource as the
        caller just read it (with the key its record lives under), so it is not read again.
        Returns the resource definition as read before the detach (None when it is gone or
        was not read), so an unpublish need not read it again for its two-primaries check.
        """
        forget = (seen.key if seen is not None else rec.PUBLISHED) if unpublish else None
        if not rec.possible_volume_id(volume_id) or not names.is_valid_node_name(node):
            return None
        with self.locks.lock(volume_id):
            rd = self._definition(volume_id)
            pending = rd is not None and rd.props.get(rec.attach_pending_key(node)) == "true"
            resource: Resource | None
            if seen is not None:
                resource = seen.resource
            else:
                try:
                    resource = self.client.get_resource(volume_id, node)
                except NotFound:
                    resource = None
            if resource is not None:
                drop = [forget] if forget and forget in resource.props else []
                diskless = bool(resource.flags & DISKLESS_FLAGS)
                marked = resource.props.get(rec.ATTACHED_BY_PLUGIN) == "true"
                if resource.tie_breaker:
                    # Already given back (an earlier detach): LINSTOR's, not ours any more.
                    self._unmark(volume_id, node, ([rec.ATTACHED_BY_PLUGIN] if marked else []) + drop)
                elif diskless and (marked or pending):
                    self._remove_attached(volume_id, node, drop)
                else:
                    self._unmark(volume_id, node, drop)
            if pending:
                self._clear_pending_attach(volume_id, node, quiet=False)
            return rd

    def _unmark(self, volume_id: str, node: str, props: list[str]) -> None:
        """Drop the plugin's own properties from a resource that stays; a gone one has none."""
        if not props:
            return
        try:
            self.client.modify_resource(volume_id, node, delete_props=props)
        except NotFound:
            return

    def _remove_attached(self, volume_id: str, node: str, drop: list[str]) -> None:
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
            self._unmark(volume_id, node, [rec.ATTACHED_BY_PLUGIN, *drop])

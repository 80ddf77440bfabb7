"""Reads of a volume's LINSTOR objects that creation, copies, snapshots and the service share.

Each is one or two REST calls; none keeps state beyond the client, so every collaborator of
the volume service can hold the same instance.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from plugin import names
from plugin import volume_records as rec
from plugin.errors import NotFound, OperationFailed, Unavailable, VolumeError
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import ResourceDefinition
from plugin.models import Volume
from plugin.observability import log_fields

log = logging.getLogger(__name__)

# Pauses before reading a just-made volume again, when the first read failed.
READ_BACK_PAUSES = (0.2, 0.5)


def require_id(volume_id: str) -> None:
    """A name LINSTOR could never hold is simply not found (no REST call for it)."""
    if not rec.possible_volume_id(volume_id):
        raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)


class VolumeReads:
    """A volume's definition, replicas and snapshots as read from LINSTOR."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def read_rd(self, volume_id: str) -> ResourceDefinition | None:
        found = self.client.list_resource_definitions([volume_id], with_volume_definitions=True)
        return found[0] if found else None

    def with_replicas(self, rd: ResourceDefinition) -> Volume:
        resources = self.client.view_resources([rd.name])
        volume = rec.volume_from(rd, resources)
        if volume is None:
            raise NotFound(f"volume {rd.name} not found", volume=rd.name)
        return volume

    def remove_quietly(self, volume_id: str) -> None:
        """Roll back a volume this call made; a failure here is logged, the cause is raised."""
        try:
            self.client.delete_resource_definition(volume_id)
        except VolumeError as exc:
            log_fields(log, logging.ERROR, "rollback failed", volume=volume_id, error=str(exc))

    def read_back(self, wanted: rec.Wanted, read: Callable[[], Volume] | None = None) -> Volume:
        """Read a volume LINSTOR has just made (by default: its definition, then its replicas).

        The volume exists now, so a failed read is not reported at once: after a LINSTOR
        error it is tried again after a pause (an unreachable controller is not waited for,
        each try could cost a whole read timeout). If it keeps failing, the error keeps its
        type (an unreachable controller stays retryable) and says that the volume exists
        and a retry returns it.
        """

        def read_definition() -> Volume:
            rd = self.read_rd(wanted.volume_id)
            if rd is None:
                raise OperationFailed(f"volume {wanted.volume_id} vanished right after it was created")
            return self.with_replicas(rd)

        for pause in (*READ_BACK_PAUSES, None):
            try:
                return (read or read_definition)()
            except VolumeError as exc:
                if pause is None or isinstance(exc, Unavailable):
                    reason = exc.message.rstrip(". ") or "no reason given"
                    raise type(exc)(
                        f"volume {wanted.name!r} was created (LINSTOR resource {wanted.volume_id}), but "
                        f"reading it back failed: {reason}; retry the request to get it",
                        **exc.details,
                    ) from None
                log_fields(
                    log,
                    logging.WARNING,
                    "reading a new volume back failed; looking again",
                    volume=wanted.volume_id,
                    error=str(exc),
                )
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def resolve_snapshot(self, snapshot_id: str) -> tuple[str, str]:
        volume_id, snap = rec.parse_snapshot_id(snapshot_id)
        if not names.is_valid_snapshot_name(snap) or (
            volume_id is not None and not rec.possible_volume_id(volume_id)
        ):
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)
        if volume_id is not None:
            return volume_id, snap
        matches = [s for s in self.client.view_snapshots() if s.name.lower() == snap.lower()]
        if len(matches) != 1:
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id)
        return matches[0].resource_name, matches[0].name

    def read_rd_quietly(self, volume_id: str) -> ResourceDefinition | None:
        try:
            return self.read_rd(volume_id)
        except VolumeError:
            return None

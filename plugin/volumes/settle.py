"""How the volume service settles a volume LINSTOR made only in part, or cannot change yet.

LINSTOR commits a definition before its satellites deploy it, so a create can find a
definition whose deployment failed; it skips offline nodes when it snapshots, so a snapshot
can find nothing to take; and it refuses changes while replicas sync. The answers to those
cases live here, apart from the service's main flows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from plugin import volume_records as rec
from plugin.errors import Busy, FailedPrecondition, NodeOffline, NotFound, VolumeError
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import ResourceDefinition
from plugin.models import Volume
from plugin.observability import log_fields
from plugin.volumes import replica_states
from plugin.volumes.reads import VolumeReads

log = logging.getLogger("plugin.volumes.service")


#: How a create compares what it found with what it asked for (see :mod:`plugin.volumes.create`).
Compare = Callable[[ResourceDefinition, rec.Wanted, bool], Volume]


class VolumeSettling:
    """Waits for, compares and removes half-made volumes; held by the volume service's collaborators."""

    def __init__(self, client: LinstorClient, reads: VolumeReads) -> None:
        self.client = client
        self.reads = reads

    def converge(self, wanted: rec.Wanted, compare: Compare, any_size: bool = False) -> Volume:
        """Another caller created the same name at the same time: wait for it, then compare.

        Only a definition whose replicas are all deployed is the volume; one whose deployment
        failed (an earlier spawn answered an error) and that carries this plugin's marks is
        removed, so the retry the caller is asked for creates it cleanly.
        """
        deadline = time.monotonic() + 10.0
        while True:
            rd = self.reads.read_rd(wanted.volume_id)
            if rd is None:
                raise Busy(
                    f"volume {wanted.name!r} is being created or deleted by another request; retry",
                    volume=wanted.volume_id,
                )
            failed = replica_states.undeployed(self.client.view_resources([wanted.volume_id]))
            if rec.is_complete(rd) and not failed:
                return compare(rd, wanted, any_size)
            if time.monotonic() > deadline:
                if failed and self.is_ours(rd, wanted):
                    self.reads.remove_quietly(wanted.volume_id)
                    raise Busy(
                        f"volume {wanted.name!r} was left half-made by an earlier request (LINSTOR could not "
                        f"deploy it on {', '.join(failed)}); it was removed, retry to create it again",
                        volume=wanted.volume_id,
                        nodes=failed,
                    )
                return compare(rd, wanted, any_size)
            time.sleep(0.2)

    @staticmethod
    def is_ours(rd: ResourceDefinition, wanted: rec.Wanted) -> bool:
        """The definition carries this plugin's marks for this very volume."""
        props = rd.props
        return props.get(rec.VOLUME_ID) == wanted.volume_id and props.get(rec.NAME) == wanted.name

    def drop_half_made(self, wanted: rec.Wanted, exc: VolumeError) -> None:
        """After a failed spawn: remove what LINSTOR committed anyway, if it carries our marks."""
        rd = self.reads.read_rd_quietly(wanted.volume_id)
        if rd is None or not self.is_ours(rd, wanted):
            return
        log_fields(
            log, logging.WARNING, "removing half-made volume", volume=wanted.volume_id, error=exc.message
        )
        self.reads.remove_quietly(wanted.volume_id)

    def lagging(self, volume_id: str) -> list[tuple[str, str]]:
        return replica_states.not_up_to_date(self.client.view_resources([volume_id]))

    def nothing_to_snapshot(self, volume_id: str, exc: NotFound) -> VolumeError:
        """LINSTOR skips offline nodes; with every replica that has data offline, nothing is left."""
        down = {n.name.upper() for n in self.client.list_nodes() if not n.online}
        offline = sorted(
            r.node
            for r in self.client.view_resources([volume_id])
            if not r.flags & {"DISKLESS", "DRBD_DISKLESS"} and r.node.upper() in down
        )
        if offline:
            return NodeOffline(
                f"cannot snapshot volume {volume_id}: every node with its data is offline "
                f"({', '.join(offline)}); retry when one of them is back",
                nodes=offline,
                **exc.details,
            )
        return FailedPrecondition(
            f"volume {volume_id} has no replica with data to snapshot", volume=volume_id, **exc.details
        )

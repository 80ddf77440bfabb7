"""What the DRBD disk states of a volume's replicas say, read from LINSTOR's resource view.

Two questions the volume service asks: was every replica really deployed (a satellite that
failed leaves its resource registered but without a disk state), and are the replicas with
data ``UpToDate`` (LINSTOR refuses a resize or clone with 974 and a snapshot with 979 while
one is still syncing or outdated).
"""

from __future__ import annotations

from collections.abc import Iterable

from plugin.linstor.records import DISKLESS_FLAGS, Resource


def _diskful_reported(resources: Iterable[Resource]) -> Iterable[tuple[str, str | None]]:
    """(node, disk state or None) of every diskful DRBD replica on a node that reports its state."""
    for resource in resources:
        if resource.flags & DISKLESS_FLAGS or resource.tie_breaker or "DELETE" in resource.flags:
            continue
        if not resource.state_known:
            continue  # the node is not connected: nothing is known about it
        volume = resource.volume(0)
        if volume is None or not volume.uses_drbd or volume.diskless:
            continue
        yield resource.node, (volume.disk_state or None)


def undeployed(resources: Iterable[Resource]) -> list[str]:
    """Nodes whose diskful replica is registered but reports no disk state (its deployment failed)."""
    return sorted(node for node, state in _diskful_reported(resources) if state is None)


def not_up_to_date(resources: Iterable[Resource]) -> list[tuple[str, str]]:
    """(node, state) of every diskful replica that is not UpToDate (syncing, outdated, unknown)."""
    reported = _diskful_reported(resources)
    return sorted((node, state or "unknown") for node, state in reported if state != "UpToDate")

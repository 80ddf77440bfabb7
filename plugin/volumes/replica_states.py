"""What the DRBD disk states of a volume's replicas say, read from LINSTOR's resource view.

Two questions the volume service asks: was every replica really deployed (a satellite that
failed leaves its resource registered but without a disk state), and are the replicas with
data ``UpToDate`` (LINSTOR refuses a resize or clone with 974 and a snapshot with 979 while
one is still syncing or outdated).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

DISKLESS_FLAGS = frozenset({"DISKLESS", "DRBD_DISKLESS", "NVME_INITIATOR", "TIE_BREAKER"})


def _volume0(resource: Mapping[str, Any]) -> Mapping[str, Any]:
    volumes = resource.get("volumes") or []
    return next((v for v in volumes if v.get("volume_number", 0) == 0), volumes[0] if volumes else {})


def _uses_drbd(volume: Mapping[str, Any]) -> bool:
    layers = volume.get("layer_data_list") or []
    return bool(layers) and layers[0].get("type") == "DRBD"


def _diskful_reported(resources: Iterable[Mapping[str, Any]]) -> Iterable[tuple[str, str | None]]:
    """(node, disk state or None) of every diskful DRBD replica on a node that reports its state."""
    for resource in resources:
        if set(resource.get("flags") or ()) & DISKLESS_FLAGS or "DELETE" in (resource.get("flags") or ()):
            continue
        if "state" not in resource:
            continue  # the node is not connected: nothing is known about it
        volume = _volume0(resource)
        if not volume or not _uses_drbd(volume) or volume.get("provider_kind") == "DISKLESS":
            continue
        state = (volume.get("state") or {}).get("disk_state")
        yield str(resource.get("node_name", "")), (str(state) if state else None)


def undeployed(resources: Iterable[Mapping[str, Any]]) -> list[str]:
    """Nodes whose diskful replica is registered but reports no disk state (its deployment failed)."""
    return sorted(node for node, state in _diskful_reported(resources) if state is None)


def not_up_to_date(resources: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(node, state) of every diskful replica that is not UpToDate (syncing, outdated, unknown)."""
    reported = _diskful_reported(resources)
    return sorted((node, state or "unknown") for node, state in reported if state != "UpToDate")

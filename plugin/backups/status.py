"""Where a shipment stands, read from a LINSTOR snapshot as the controller reports it.

LINSTOR >= 1.33 keeps the state in snapshot-definition properties:
``BackupShipping/Source/<remote>/ShippingStatus`` on the shipping side and
``BackupShipping/Target/ShippingStatus`` (with ``.../Target/BackupSrcRemote``) on the side
that receives or downloads a backup. Older controllers set the ``BACKUP`` flag and add
``SHIPPED`` when done. A snapshot without either is local: ready when ``SUCCESSFUL``.
"""

from __future__ import annotations

from enum import Enum

from plugin.linstor.records import SnapshotDefinition

NAMESPACE = "BackupShipping"
SOURCE = f"{NAMESPACE}/Source/"
TARGET = f"{NAMESPACE}/Target/"
STATUS = "ShippingStatus"
SUCCESS = "success"
FAILURES = ("fail", "abort", "error")


class Shipping(Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    NONE = "none"  # no shipment recorded on this snapshot


def _word(value: str | None) -> Shipping:
    text = (value or "").strip().lower()
    if text == SUCCESS:
        return Shipping.DONE
    if any(word in text for word in FAILURES):
        return Shipping.FAILED
    return Shipping.RUNNING


def shipping_to(snap: SnapshotDefinition, remote: str) -> Shipping:
    """The state of shipping ``snap`` to ``remote`` (remote names compare case-insensitively)."""
    props = snap.merged_props
    flags = snap.flags
    for key, value in props.items():
        if key.startswith(SOURCE) and key.endswith("/" + STATUS):
            name = key[len(SOURCE) : -len(STATUS) - 1]
            if name.lower() == remote.lower():
                return _word(value)
    if "BACKUP" in flags and props.get(f"{NAMESPACE}/BackupTargetRemote", remote).lower() == remote.lower():
        if "SHIPPED" in flags:
            return Shipping.DONE
        if any(f.startswith("FAILED") or "ABORT" in f for f in flags):
            return Shipping.FAILED
        return Shipping.RUNNING
    return Shipping.NONE


def receiving(snap: SnapshotDefinition) -> Shipping:
    """The state of a snapshot that is being downloaded or received from a remote."""
    props = snap.merged_props
    if f"{TARGET}{STATUS}" in props or f"{TARGET}BackupSrcRemote" in props:
        return _word(props.get(f"{TARGET}{STATUS}"))
    return Shipping.NONE


def locally_ready(snap: SnapshotDefinition) -> bool:
    """The snapshot's data is complete in this cluster (restores from it can start)."""
    state = receiving(snap)
    if state is not Shipping.NONE:
        return state is Shipping.DONE
    return snap.successful


def local_failure(snap: SnapshotDefinition) -> bool:
    return any(f.startswith("FAILED") for f in snap.flags) or receiving(snap) is Shipping.FAILED

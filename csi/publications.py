"""PUBLISH_READONLY and the attach limit: the CSI rules around ControllerPublishVolume.

Read-only publications. ``readonly`` of ControllerPublishVolume travels to the node in
the publish context (``linstor.csi.linbit.com/read-only``); NodeStage then mounts the
staging path read-only and NodePublish binds read-only, whatever the capability's mode.
Each publication is recorded on the node's resource as ``<ACCESS_MODE>:<rw|ro>``
(:mod:`plugin.volumes.publications`).

Kubernetes publishes a volume once per node (one VolumeAttachment), so a second call
for the same node with the other ``readonly`` is a conflicting request, and the spec's
answer is ALREADY_EXISTS. Nomad, however, publishes once per *claim*, with
``readonly=true`` for each read claim whether or not the plugin advertises
PUBLISH_READONLY, and stages every claim's usage at its own staging path
(``ro-...``/``rw-...``). Its mixed read and write claims on one node must keep working, so
the conflict is narrowed to what cannot be served: the same access mode published both
read-write and read-only on one node, for the modes that allow one writer on the node
(SINGLE_NODE_WRITER, SINGLE_NODE_SINGLE_WRITER). Nomad never produces that pair: it
gives such a volume either one writer or readers, not both. A read claim in another
mode (MULTI_NODE_READER_ONLY beside a SINGLE_NODE_WRITER writer, as Nomad sends it) is
simply recorded beside the write claim; each claim gets its own publish context and
mounts accordingly.

Attach limit. With ``--max-volumes-per-node`` below DRBD's own limit, a publication to
a node that already holds that many volumes published by this driver (counted from
LINSTOR, so every controller replica agrees) is RESOURCE_EXHAUSTED; publishing again
where the volume already is never counts twice. Publications to one node are counted and
made one at a time in this process, so two concurrent calls cannot both take the last
slot.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from csi import keys
from csi.generated import csi_pb2
from plugin import errors

if TYPE_CHECKING:
    from plugin.volumes.service import VolumeService

Mode = csi_pb2.VolumeCapability.AccessMode.Mode

# Modes that allow one writer on the node: one volume cannot be published there both ways.
ONE_WRITER_MODES = frozenset({Mode.SINGLE_NODE_WRITER, Mode.SINGLE_NODE_SINGLE_WRITER})


def _mode_name(mode: int) -> str:
    try:
        return Mode.Name(mode)
    except ValueError:
        return str(mode)


def token(mode: int, readonly: bool) -> str:
    """How one publication is recorded: ``SINGLE_NODE_WRITER:rw``."""
    return f"{_mode_name(mode)}:{'ro' if readonly else 'rw'}"


def check_compatible(volume_id: str, node: str, recorded: frozenset[str], mode: int, readonly: bool) -> None:
    """ALREADY_EXISTS when the node holds this volume in the same one-writer mode the other way round."""
    if mode not in ONE_WRITER_MODES:
        return
    other = token(mode, not readonly)
    if other in recorded:
        have = "read-write" if readonly else "read-only"
        want = "read-only" if readonly else "read-write"
        raise errors.AlreadyExists(
            f"volume {volume_id} is already published {have} to node {node} with access mode "
            f"{_mode_name(mode)}; it cannot also be published {want} there (unpublish it first)",
            volume=volume_id,
            node=node,
        )


class AttachLimit:
    """``--max-volumes-per-node`` enforced at ControllerPublishVolume."""

    def __init__(self, max_volumes_per_node: int) -> None:
        # 0 means "no limit" (the CO decides); DRBD's own limit can never be reached.
        self.limit = max_volumes_per_node
        self.active = 0 < max_volumes_per_node < keys.DEFAULT_MAX_VOLUMES_PER_NODE
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    @contextmanager
    def hold(self, node: str) -> Iterator[None]:
        if not self.active:
            yield
            return
        with self._guard:
            lock = self._locks.setdefault(node.lower(), threading.Lock())
        with lock:
            yield

    def check(self, service: VolumeService, volume_id: str, node: str) -> None:
        if not self.active:
            return
        others = [v for v in service.published_on_node(node) if v.lower() != volume_id.lower()]
        if len(others) >= self.limit:
            raise errors.NoSpace(
                f"node {node} already has {len(others)} volumes of this driver published, its limit "
                f"(--max-volumes-per-node={self.limit}); volume {volume_id} was not attached there",
                node=node,
            )

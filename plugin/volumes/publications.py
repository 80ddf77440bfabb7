"""Where a front end published a volume, kept on the volume's resources in LINSTOR.

A CSI ControllerPublish may land on a node that already holds a replica with data, so
"has a resource there" does not tell a publication from a replica. Each publication is
therefore written onto the resource of that node as ``Aux/volume-plugin/published``: a
comma-separated set of ``<ACCESS_MODE>:<rw|ro>`` tokens, one per distinct way the volume
was published there (Nomad publishes once per claim). Unpublish removes the property; a
diskless resource made by attach goes away with its property. Any controller replica
can answer from LINSTOR alone, and a diskless resource the plugin attached before this
record existed still counts (``attached-diskless``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from plugin import names
from plugin import volume_records as rec
from plugin.linstor.records import Resource

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient


def tokens_of(resource: Resource) -> frozenset[str]:
    value = resource.props.get(rec.PUBLISHED, "")
    return frozenset(t for t in value.split(",") if t)


def is_published(resource: Resource) -> bool:
    props = resource.props
    return bool(props.get(rec.PUBLISHED)) or props.get(rec.ATTACHED_BY_PLUGIN) == "true"


@dataclass(frozen=True)
class NodeRecord:
    """One read of the node's resource, kept for the rest of a publish so it is not read again.

    ``resource`` is None when the node holds none; ``key`` is the property the volume's
    publications live under (a consistency-group member has its own key on a shared resource).
    """

    key: str
    resource: Resource | None

    @property
    def tokens(self) -> frozenset[str]:
        value = self.resource.props.get(self.key, "") if self.resource is not None else ""
        return frozenset(t for t in value.split(",") if t)


@dataclass(frozen=True)
class Publishing:
    """A publication attach writes itself: in the same write as its own mark where both are due."""

    record: NodeRecord
    token: str

    def props(self) -> dict[str, str]:
        """The property to write; empty when the token is already recorded."""
        current = self.record.tokens
        if self.token in current:
            return {}
        return {self.record.key: ",".join(sorted(current | {self.token}))}


class Publications:
    """Which volumes are published to a node; held by the volume service.

    A publish writes its record through the attach (:class:`Publishing`), an unpublish drops
    it through the detach, each with the resource it read once.
    """

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def published_on_node(self, node: str) -> list[str]:
        """Ids of the volumes published to the node, read from LINSTOR (what attach limits count)."""
        if not names.is_valid_node_name(node):
            return []
        return sorted({r.name for r in self.client.view_resources(nodes=[node]) if is_published(r)})

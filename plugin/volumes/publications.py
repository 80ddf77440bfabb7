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

from contextlib import suppress
from typing import TYPE_CHECKING

from plugin import names
from plugin import volume_records as rec
from plugin.errors import NotFound
from plugin.linstor.records import Resource

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient


def tokens_of(resource: Resource) -> frozenset[str]:
    value = resource.props.get(rec.PUBLISHED, "")
    return frozenset(t for t in value.split(",") if t)


def is_published(resource: Resource) -> bool:
    props = resource.props
    return bool(props.get(rec.PUBLISHED)) or props.get(rec.ATTACHED_BY_PLUGIN) == "true"


class Publications:
    """Read and write the publication record of (volume, node); held by the volume service."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def publications(self, volume_id: str, node: str) -> frozenset[str]:
        """The tokens recorded for the volume on the node; empty when nothing is published there."""
        if not rec.possible_volume_id(volume_id) or not names.is_valid_node_name(node):
            return frozenset()
        try:
            return tokens_of(self.client.get_resource(volume_id, node))
        except NotFound:
            return frozenset()

    def record_publication(self, volume_id: str, node: str, token: str) -> None:
        """Add one token to the node's record (after attach made the resource exist)."""
        current = self.publications(volume_id, node)
        if token in current:
            return
        value = ",".join(sorted(current | {token}))
        self.client.modify_resource(volume_id, node, override_props={rec.PUBLISHED: value})

    def clear_publication(self, volume_id: str, node: str) -> None:
        """Forget every publication on the node; a missing volume, node or resource is fine."""
        if not rec.possible_volume_id(volume_id) or not names.is_valid_node_name(node):
            return
        with suppress(NotFound):
            resource = self.client.get_resource(volume_id, node)
            if rec.PUBLISHED in resource.props:
                self.client.modify_resource(volume_id, node, delete_props=[rec.PUBLISHED])

    def published_on_node(self, node: str) -> list[str]:
        """Ids of the volumes published to the node, read from LINSTOR (what attach limits count)."""
        if not names.is_valid_node_name(node):
            return []
        return sorted({r.name for r in self.client.view_resources(nodes=[node]) if is_published(r)})

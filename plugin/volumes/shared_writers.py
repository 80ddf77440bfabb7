"""Two writers on one block volume (RWX block, as KubeVirt live migration uses it).

DRBD lets a second node open a volume for writing only while the resource allows two
primaries. Like LINBIT's CSI driver, the plugin sets ``DrbdOptions/Net/allow-two-primaries
yes`` on the resource definition when a MULTI_NODE_MULTI_WRITER block volume is published
read-write to a second node, refuses a third writer (DRBD allows two primaries, not more),
and removes the option again once one writer is left. Writers are read from LINSTOR (the
publication records and the reported in-use state), so any replica of the plugin agrees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from plugin.errors import FailedPrecondition, NotFound
from plugin.linstor.records import Resource, ResourceDefinition
from plugin.volumes.publications import tokens_of

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient

TWO_PRIMARIES = "DrbdOptions/Net/allow-two-primaries"
#: The publication token of a read-write RWX block publication.
SHARED_WRITER = "MULTI_NODE_MULTI_WRITER:rw"


def _writes(resource: Resource) -> bool:
    return any(t.endswith(":rw") for t in tokens_of(resource))


def writers(resources: list[Resource], *, with_in_use: bool) -> list[str]:
    """Nodes holding the volume for writing: published read-write (and, if asked, reported in use)."""
    found = set()
    for r in resources:
        if _writes(r) or (with_in_use and r.in_use):
            found.add(r.node)
    return sorted(found)


class SharedWriters:
    """The two-primaries option around RWX block publications; held by the volume service."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def admit_shared_writer(self, volume_id: str, node: str) -> None:
        """Before attaching a read-write RWX block publication to ``node``: allow a second primary."""
        others = [
            n
            for n in writers(self.client.view_resources([volume_id]), with_in_use=True)
            if n.lower() != node.lower()
        ]
        if len(others) >= 2:
            raise FailedPrecondition(
                f"volume {volume_id} is already written on {others[0]} and {others[1]}; DRBD allows two "
                f"writers at once, not a third on {node}: unpublish it from one of them first",
                volume=volume_id,
                nodes=others,
            )
        if not others:
            return
        rd = self.client.get_resource_definition(volume_id)
        if rd.props.get(TWO_PRIMARIES) != "yes":
            self.client.modify_resource_definition(volume_id, override_props={TWO_PRIMARIES: "yes"})

    def release_shared_writer(self, volume_id: str, read: ResourceDefinition | None = None) -> None:
        """After an unpublish: drop the option once at most one read-write publication is left.

        ``read`` is the definition as the unpublish read it while holding the volume (the option
        changes only in a publish or unpublish of the same volume, never beside it); a
        definition of another name (a consistency group's shared one) is not used.
        """
        if read is not None and read.name.lower() == volume_id.lower():
            rd = read
        else:
            try:
                rd = self.client.get_resource_definition(volume_id)
            except NotFound:
                return
        if TWO_PRIMARIES not in rd.props:
            return
        if len(writers(self.client.view_resources([volume_id]), with_in_use=False)) <= 1:
            self.client.modify_resource_definition(volume_id, delete_props=[TWO_PRIMARIES])

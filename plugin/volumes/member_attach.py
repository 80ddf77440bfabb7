"""Attach, detach and publications of volumes that share a resource (consistency-group members).

Members of one resource share its resource on a node: attach makes it available and hands
back the member's own device; each member's publications are recorded on the shared
resource under its volume number (``Aux/volume-plugin/published/<number>``, number 0 under
the plain key); a detach leaves the resource while another member is published there.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import replace

from plugin import names
from plugin import volume_records as rec
from plugin.errors import NotFound
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import ResourceDefinition
from plugin.models import Attachment
from plugin.volumes import members as vm
from plugin.volumes.attach import VolumeAttachments
from plugin.volumes.consistency_groups import find_member
from plugin.volumes.members import PUBLISHED_PREFIX, publication_key
from plugin.volumes.publications import NodeRecord, Publishing
from plugin.volumes.reads import VolumeReads


class MemberAttachments:
    """Attach and detach of members, over the plain attachments; held by the consistency-group service."""

    def __init__(self, client: LinstorClient, reads: VolumeReads, attachments: VolumeAttachments) -> None:
        self.client = client
        self.reads = reads
        self.attachments = attachments

    def attach(
        self, volume_id: str, node: str, volume_number: int = 0, *, publish: Publishing | None = None
    ) -> Attachment:
        resource, number = vm.split_volume_id(volume_id)
        if number:
            find_member(self.reads, volume_id)  # NotFound for a number that is no member
        attachment = self.attachments.attach(resource, node, number, publish=publish)
        return replace(attachment, volume_id=volume_id)

    def detach(self, volume_id: str, node: str, *, unpublish: bool = False) -> ResourceDefinition | None:
        """Detach a member; with ``unpublish`` its publication record goes too.

        The shared resource is read once here and handed on to the plain detach; what that
        returns (the shared resource's definition) is returned.
        """
        try:
            resource, number = vm.split_volume_id(volume_id)
        except NotFound:
            return None
        own = publication_key(number)
        if not names.is_valid_node_name(node):
            return None
        try:
            seen = NodeRecord(own, self.client.get_resource(resource, node))
        except NotFound:
            seen = NodeRecord(own, None)
        props = seen.resource.props if seen.resource is not None else {}
        if any(k.startswith(rec.PUBLISHED) and k != own for k in props):
            # another member is published here: the resource stays, only this member's record goes
            if unpublish and own in props:
                with suppress(NotFound):
                    self.client.modify_resource(resource, node, delete_props=[own])
            return None
        return self.attachments.detach(resource, node, unpublish=unpublish, seen=seen)


class MemberPublications:
    """Publication records of members, per volume number on the shared resource."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def published_on_node(self, node: str) -> list[str]:
        if not names.is_valid_node_name(node):
            return []
        found = set()
        for resource in self.client.view_resources(nodes=[node]):
            name, props = resource.name, resource.props
            suffixes = [k[len(PUBLISHED_PREFIX) :] for k in props if k.startswith(PUBLISHED_PREFIX)]
            numbers = [int(n) for n in suffixes if n.isdigit()]
            found.update(vm.join_volume_id(name, n) for n in numbers)
            if props.get(rec.PUBLISHED) or (props.get(rec.ATTACHED_BY_PLUGIN) == "true" and not numbers):
                found.add(name)
        return sorted(found)

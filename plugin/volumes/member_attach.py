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
from plugin.models import Attachment
from plugin.volumes import members as vm
from plugin.volumes.attach import VolumeAttachments
from plugin.volumes.consistency_groups import find_member
from plugin.volumes.members import PUBLISHED_PREFIX, publication_key
from plugin.volumes.reads import VolumeReads


class MemberAttachments:
    """Attach and detach of members, over the plain attachments; held by the consistency-group service."""

    def __init__(self, client: LinstorClient, reads: VolumeReads, attachments: VolumeAttachments) -> None:
        self.client = client
        self.reads = reads
        self.attachments = attachments

    def attach(self, volume_id: str, node: str, volume_number: int = 0) -> Attachment:
        resource, number = vm.split_volume_id(volume_id)
        if number:
            find_member(self.reads, volume_id)  # NotFound for a number that is no member
        attachment = self.attachments.attach(resource, node, number)
        return replace(attachment, volume_id=volume_id)

    def detach(self, volume_id: str, node: str) -> None:
        try:
            resource, number = vm.split_volume_id(volume_id)
        except NotFound:
            return
        if names.is_valid_node_name(node):
            with suppress(NotFound):
                props = self.client.get_resource(resource, node).props
                own = publication_key(number)
                if any(k.startswith(rec.PUBLISHED) and k != own for k in props):
                    return  # another member is published here: the resource stays
        self.attachments.detach(resource, node)


class MemberPublications:
    """Publication records of members, per volume number on the shared resource."""

    def __init__(self, client: LinstorClient) -> None:
        self.client = client

    def publications(self, volume_id: str, node: str) -> frozenset[str]:
        try:
            resource, number = vm.split_volume_id(volume_id)
        except NotFound:
            return frozenset()
        if not names.is_valid_node_name(node):
            return frozenset()
        try:
            value = self.client.get_resource(resource, node).props.get(publication_key(number), "")
        except NotFound:
            return frozenset()
        return frozenset(t for t in value.split(",") if t)

    def record_publication(self, volume_id: str, node: str, token: str) -> None:
        resource, number = vm.split_volume_id(volume_id)
        current = self.publications(volume_id, node)
        if token not in current:
            value = ",".join(sorted(current | {token}))
            self.client.modify_resource(resource, node, override_props={publication_key(number): value})

    def clear_publication(self, volume_id: str, node: str) -> None:
        try:
            resource, number = vm.split_volume_id(volume_id)
        except NotFound:
            return
        if not names.is_valid_node_name(node):
            return
        with suppress(NotFound):
            if publication_key(number) in self.client.get_resource(resource, node).props:
                self.client.modify_resource(resource, node, delete_props=[publication_key(number)])

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

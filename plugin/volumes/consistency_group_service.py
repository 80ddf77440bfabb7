"""The volume service for CSI: plain volumes plus consistency-group members.

Member ids (``<resource>/<number>``, or a resource whose volumes are members) are routed to
the member collaborators (:mod:`plugin.volumes.consistency_groups` for create and restore,
:mod:`plugin.volumes.member_attach`, :mod:`plugin.volumes.member_snapshots`); every other id
goes the plain volume service's way. The Docker front end uses the plain service.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace

from plugin import names
from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import InUse, InvalidArgument, NoSpace, NotFound
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Resource
from plugin.models import TopologyRequirement, Volume
from plugin.params.model import VolumeParams
from plugin.volumes import listing, sizes
from plugin.volumes import members as vm
from plugin.volumes.attach import VolumeAttachments
from plugin.volumes.consistency_groups import (
    PVC_NAME,
    PVC_NAMESPACE,
    GroupOf,
    MemberCreation,
    Target,
    find_member,
    group_resource_name,
    is_shared,
    may_name_member,
    member_volume,
)
from plugin.volumes.member_attach import MemberAttachments, MemberPublications
from plugin.volumes.member_snapshots import MemberSnapshots
from plugin.volumes.members import publication_key
from plugin.volumes.service import VolumeService
from plugin.volumes.snapshots import VolumeSnapshots


class ConsistencyGroupService(VolumeService):
    """The volume service, with volumes that share a resource."""

    def __init__(
        self,
        client: LinstorClient,
        config: Config,
        group_of: GroupOf | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(client, config, clock)
        self._group_of = group_of
        self.members = MemberCreation(
            client, self.groups, self.locks, self.reads, self.copies, self.get_volume
        )
        # Members share their resource on a node and in a snapshot: member collaborators wrap plain ones.
        plain_attachments = VolumeAttachments(client, self.locks)
        plain_snapshots = VolumeSnapshots(client, self.locks, self.reads, self.settling)
        self.attachments = MemberAttachments(client, self.reads, plain_attachments)
        self.publication_records = MemberPublications(client)
        self.snapshots = MemberSnapshots(client, self.locks, self.reads, plain_snapshots)

    # ------------------------------------------------------------------ reading members

    def _read_volume(self, volume_id: str, replicas: bool = True) -> tuple[Volume, list[Resource]]:
        resource, number = vm.split_volume_id(volume_id)
        rd = self.reads.read_rd(resource)
        if rd is None or (number and not is_shared(rd)):
            raise NotFound(f"volume {volume_id} not found", volume=volume_id)
        if is_shared(rd):
            resources = self.client.view_resources([rd.name]) if replicas else []
            return member_volume(rd, number, resources), resources
        return self._plain_volume(volume_id, rd, replicas)

    def _address(self, volume_id: str) -> tuple[str, int]:
        """A member's data is its own volume number of the shared resource."""
        return vm.split_volume_id(volume_id)

    def _publication_key(self, volume_id: str) -> str:
        return publication_key(vm.split_volume_id(volume_id)[1])

    def iter_volumes(self, with_replicas: bool = False) -> Iterator[Volume]:
        """Every volume and group member, one at a time, a page of LINSTOR's answer read at a time."""
        for rd, resources in listing.definitions(self.client, with_replicas):
            if is_shared(rd):
                for n in sorted(vm.tagged_members(rd.volume_definitions)):
                    yield member_volume(rd, n, resources)
            elif rec.is_complete(rd):
                volume = rec.volume_from(rd, resources or None)
                if volume is not None:
                    yield volume

    # ------------------------------------------------------------------ create

    def create_volume(
        self,
        name: str,
        size_bytes: int,
        params: VolumeParams,
        *,
        source: str | None = None,
        topology: TopologyRequirement | None = None,
    ) -> Volume:
        group = self._group_for(params)
        if group is not None:
            namespace, label = group
            target = Target(group_resource_name(namespace, label), f"{namespace}/{label}")
            return self.members.create_member(name, size_bytes, params, target, source)
        if source and source.startswith("snapshot:") and self._is_member_snapshot(source[len("snapshot:") :]):
            target = Target(self.volume_id_for(name, params), None)
            return self.members.create_member(name, size_bytes, params, target, source)
        return super().create_volume(name, size_bytes, params, source=source, topology=topology)

    def _group_for(self, params: VolumeParams) -> tuple[str, str] | None:
        if self._group_of is None:
            return None
        namespace, pvc = params.extra.get(PVC_NAMESPACE, ""), params.extra.get(PVC_NAME, "")
        if not namespace or not pvc:
            return None
        label = self._group_of(namespace, pvc)
        return (namespace, label) if label else None

    def _is_member_snapshot(self, snapshot_ref: str) -> bool:
        """Whether restoring it must pick one volume number out of a shared resource."""
        try:
            resource, number, snap = vm.split_snapshot_id(snapshot_ref)
        except (NotFound, InvalidArgument):
            return False
        if number:
            return True
        if not names.is_valid_resource_name(resource) or not names.is_valid_snapshot_name(snap):
            return False
        try:
            found = self.client.get_snapshot(resource, snap)
        except (NotFound, InvalidArgument):
            return False
        return vm.snapshot_numbers(found) != [0] or bool(vm.tagged_members(found.volume_definitions))

    # ------------------------------------------------------------------ delete, expand

    def delete_volume(self, volume_id: str) -> None:
        """Members lose their volume definition; other ids go the plain way without a read first."""
        if not may_name_member(volume_id):
            super().delete_volume(volume_id)
            return
        try:
            member = find_member(self.reads, volume_id)
        except NotFound:
            return
        if member is None:
            super().delete_volume(volume_id)
            return
        resource, number, rd = member
        others = [n for n in vm.tagged_members(rd.volume_definitions) if n != number]
        if not others:
            super().delete_volume(resource)  # the last member: the resource goes
            return
        with self.locks.lock(resource):
            try:
                self.client.delete_volume_definition(resource, number)
            except NotFound:
                return
            except InUse as exc:
                raise InUse(
                    f"volume {volume_id} shares its resource with volumes that are in use; "
                    f"unmount them first ({exc.message})",
                    **exc.details,
                ) from None

    def expand_volume(self, volume_id: str, size_bytes: int) -> Volume:
        member = find_member(self.reads, volume_id)
        if member is None:
            return super().expand_volume(volume_id, size_bytes)
        resource, number, rd = member
        with self.locks.lock(resource):
            volume = member_volume(rd, number, [])
            new_kib = sizes.grow_kib(volume_id, volume.size_bytes, size_bytes)
            if new_kib * 1024 > volume.size_bytes:
                try:
                    self.client.resize_volume_definition(resource, new_kib, number)
                except NoSpace as exc:
                    raise NoSpace(
                        f"not enough free space to grow volume {volume_id}: {exc.message}", **exc.details
                    ) from None
            return replace(volume, size_bytes=max(volume.size_bytes, new_kib * 1024))

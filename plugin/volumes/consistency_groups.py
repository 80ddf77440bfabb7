"""Consistency groups: volumes that are volume numbers of one LINSTOR resource, as LINBIT's driver.

PVCs of one namespace that carry the same ``linstor.csi.linbit.com/consistency-group`` label
become volumes of one resource definition, ``cg-<uuid>``, the uuid derived from namespace and
label as LINBIT's driver derives it (so groups it made carry over). DRBD replicates all
volumes of a resource in one stream, in write order across them, and a LINSTOR snapshot of
the resource takes them all at the same instant: a group snapshot of the members is one
LINSTOR snapshot.

A member's volume definition carries its CSI name (``Aux/csi-volume-name``, LINBIT's tag)
and this plugin's record of it (``Aux/volume-plugin/*`` on the volume definition, where a
plain volume keeps them on the resource definition). Its id is ``<resource>/<number>``
(``<resource>`` for number 0); a snapshot id carries the number too. Members share their
resource on a node, so publications are recorded per volume number on it
(``Aux/volume-plugin/published/<number>``) and a detach leaves the resource while another
member is published there. A member is removed as its volume definition; the last one
takes the resource with it. Members come from a create, or from a snapshot of a group:
the first restore brings back the whole resource, each member then claims its number.
Cloning a volume into a group is refused, as LINBIT's driver does.

The service understands member ids always (a node plugin must stage what a controller with
consistency groups made); only creating into a group needs the PVC's label, which the CSI
front end reads from Kubernetes and hands in as ``group_of``.

This module says what a member is and makes members (:class:`MemberCreation`); the service
that routes member ids to them is :mod:`plugin.volumes.consistency_group_service`, their
attach and publications :mod:`plugin.volumes.member_attach`, their snapshots
:mod:`plugin.volumes.member_snapshots`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from plugin import volume_records as rec
from plugin.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InvalidArgument,
    NoSpace,
    NotFound,
    OperationFailed,
    VolumeError,
)
from plugin.keyed_locks import KeyedLocks
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Resource, ResourceDefinition, SnapshotDefinition, VolumeDefinition
from plugin.models import Volume
from plugin.observability import log_fields
from plugin.params.groups import resource_group_name
from plugin.params.model import VolumeParams
from plugin.progress import long_operation
from plugin.volumes import members as vm
from plugin.volumes import sizes
from plugin.volumes.copies import VolumeCopies
from plugin.volumes.create import wanted_for
from plugin.volumes.members import publication_key
from plugin.volumes.reads import VolumeReads
from plugin.volumes.resource_groups import ResourceGroups

log = logging.getLogger(__name__)

GROUP_LABEL = "linstor.csi.linbit.com/consistency-group"
GROUP_PROP = f"Aux/{GROUP_LABEL}"  # on the resource definition: "<namespace>/<label>"
RESTORED_FROM = rec.AUX + "restored-from"  # on a restored shared resource: "<resource>/<snapshot>"
PVC_NAME = "csi.storage.k8s.io/pvc/name"
PVC_NAMESPACE = "csi.storage.k8s.io/pvc/namespace"
_UUID_SPACE = b"linstor.csi.linbit.com"

# (namespace, PVC name) -> the PVC's consistency-group label, or None.
GroupOf = Callable[[str, str], str | None]


def group_resource_name(namespace: str, group: str) -> str:
    """``cg-<uuid>`` as LINBIT's driver names it: SHA-1 name-based uuid over the driver name."""
    raw = bytearray(hashlib.sha1(_UUID_SPACE + f"{namespace}/{group}".encode()).digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    return f"cg-{uuid.UUID(bytes=bytes(raw))}"


_GROUP_RESOURCE = re.compile(r"cg-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", re.IGNORECASE)


def may_name_member(volume_id: str) -> bool:
    """Whether an id can name a member, told from its shape alone, without asking LINSTOR.

    A member is ``<resource>/<number>``, or a group's ``cg-<uuid>`` for number 0. The only
    other shared resources, lone restores of one member, hold that one volume: their id is
    ``<resource>/<number>``, or ``<resource>`` for number 0, where removing the member is
    removing the resource, which is what a plain delete does. So every other id can skip
    the read of its definition.
    """
    return "/" in volume_id or _GROUP_RESOURCE.fullmatch(volume_id) is not None


def is_shared(rd: ResourceDefinition) -> bool:
    """A resource whose volumes are members (a group's, or one restored from a group's snapshot)."""
    return GROUP_PROP in rd.props or bool(vm.tagged_members(rd.volume_definitions))


@dataclass(frozen=True)
class Target:
    """Where a new member goes: its resource, and the group it belongs to (None: a lone restore)."""

    resource: str
    group: str | None


def member_volume(rd: ResourceDefinition, number: int, resources: Sequence[Resource]) -> Volume:
    """One member as a :class:`Volume`, its record and device read from its own volume number."""
    vd = rd.volume_definition(number)
    tag = vm.tagged_members([vd]).get(number) if vd else None
    member_id = vm.join_volume_id(rd.name, number)
    if vd is None or not tag:
        raise NotFound(f"volume {member_id} not found", volume=member_id)
    vd_props = vd.props
    shared = {k: v for k, v in rd.props.items() if not k.startswith("Aux/")}
    # The member seen as a volume of its own: its record, as volume 0 of the definition.
    view = replace(rd, props={**shared, **vd_props}, volume_definitions=(replace(vd, number=0),))
    key = publication_key(number)
    replicas = []
    for resource in resources:
        props = {
            k: v
            for k, v in resource.props.items()
            if not k.startswith(rec.PUBLISHED) and k != rec.ATTACHED_BY_PLUGIN
        }
        if resource.props.get(key):
            props[rec.PUBLISHED] = resource.props[key]
        volumes = tuple(replace(v, number=0) for v in resource.volumes if v.number == number)
        replicas.append(replace(resource, props=props, volumes=volumes))
    volume = rec.volume_from(view, replicas)
    assert volume is not None  # the view has volume 0
    return replace(volume, id=member_id, name=vd_props.get(rec.NAME) or tag)


def find_member(reads: VolumeReads, volume_id: str) -> tuple[str, int, ResourceDefinition] | None:
    """(resource, number, definition) when the id names a member; None for a plain volume."""
    resource, number = vm.split_volume_id(volume_id)
    if number == 0 and "/" not in volume_id:
        rd = reads.read_rd(resource)
        if rd is None or not is_shared(rd):
            return None
    else:
        rd = reads.read_rd(resource)
        if rd is None or not is_shared(rd):
            raise NotFound(f"volume {volume_id} not found", volume=volume_id)
    if number not in vm.tagged_members(rd.volume_definitions):
        raise NotFound(f"volume {volume_id} not found", volume=volume_id)
    return resource, number, rd


class MemberCreation:
    """Create members of a consistency group, or restore one from a group's snapshot.

    ``get_volume`` is the consistency-group service's own, which reads members.
    """

    def __init__(
        self,
        client: LinstorClient,
        groups: ResourceGroups,
        locks: KeyedLocks,
        reads: VolumeReads,
        copies: VolumeCopies,
        get_volume: Callable[[str], Volume],
    ) -> None:
        self.client = client
        self.groups = groups
        self.locks = locks
        self.reads = reads
        self.copies = copies
        self.get_volume = get_volume

    def create_member(
        self, name: str, size_bytes: int, params: VolumeParams, target: Target, source: str | None
    ) -> Volume:
        size_kib = sizes.create_kib(name, size_bytes, params.fs_type)
        if source and not source.startswith("snapshot:"):
            raise InvalidArgument(
                f"volume {name!r} belongs to consistency group {target.group}: cloning a volume into a "
                "consistency group is not supported; restore from a group snapshot instead"
            )
        wanted = wanted_for(
            target.resource, name, size_kib, params, source, group=resource_group_name(params)
        )
        with self.locks.lock(target.resource):
            rd = self.reads.read_rd(target.resource)
            if rd is not None:
                taken = [n for n, tag in vm.tagged_members(rd.volume_definitions).items() if tag == name]
                if taken:
                    return self._compare_member(rd, min(taken), wanted, size_bytes == 0)
                if not is_shared(rd) or (target.group and rd.props.get(GROUP_PROP) != target.group):
                    raise AlreadyExists(
                        f"LINSTOR resource {target.resource} exists and is not consistency group "
                        f"{target.group or name}; choose another name",
                        volume=target.resource,
                    )
                group_rg = rd.resource_group
                if group_rg.lower() != wanted.resource_group.lower():
                    raise InvalidArgument(
                        f"all members of consistency group {target.group} must use the same StorageClass: "
                        f"the group uses resource group {group_rg}, volume {name!r} asks for "
                        f"{wanted.resource_group}; nothing was made"
                    )
            self.groups.ensure(params, wanted.resource_group)
            if source:
                number = self._restore_member(wanted, target, rd, source[len("snapshot:") :], size_bytes == 0)
            else:
                number = self._add_member(wanted, params, target, rd)
        return self.get_volume(vm.join_volume_id(target.resource, number))

    def _member_props(self, wanted: rec.Wanted, with_filesystem: bool) -> dict[str, str]:
        props = {**wanted.aux_props(datetime.now(UTC)), vm.MEMBER_NAME: wanted.name}
        if with_filesystem:
            props.update(wanted.filesystem_props())
        return props

    def _add_member(
        self, wanted: rec.Wanted, params: VolumeParams, target: Target, rd: ResourceDefinition | None
    ) -> int:
        resource = target.resource
        made_rd = rd is None
        if made_rd:
            try:
                self.client.create_resource_definition(
                    resource, wanted.resource_group, {GROUP_PROP: target.group or ""}
                )
            except AlreadyExists:
                raise Busy(
                    f"consistency group {target.group} is being made by another request; retry"
                ) from None
        number: int | None = None
        try:
            self.client.create_volume_definition(resource, wanted.size_kib, self._member_props(wanted, True))
            number = self._claim_number(resource, wanted.name)
            if made_rd or not self.client.view_resources([resource]):
                self._place(resource, params)
        except VolumeError as exc:
            if made_rd:
                self.reads.remove_quietly(resource)
            elif number is not None:
                with suppress(VolumeError):
                    self.client.delete_volume_definition(resource, number)
            if isinstance(exc, NoSpace):
                raise NoSpace(
                    f"LINSTOR cannot place volume {wanted.name!r} of consistency group {target.group} "
                    f"({wanted.size_kib * 1024} bytes): {exc.message}; nothing was made",
                    **exc.details,
                ) from None
            raise
        log_fields(log, logging.INFO, "consistency-group member made", volume=resource, number=number)
        return number

    def _place(self, resource: str, params: VolumeParams) -> None:
        select: dict[str, Any] = {}
        if params.nodes:
            select = {"node_name_list": list(params.nodes), "place_count": len(params.nodes)}
        self.client.autoplace(resource, select or None, diskless_on_remaining=params.diskless_on_remaining)
        for node in params.client_nodes:
            self.client.create_resource(
                resource, node, diskless=True, storage_pool=params.diskless_storage_pool
            )

    def _claim_number(self, resource: str, name: str) -> int:
        """The member's number; duplicates from a race are removed, keeping the lowest (as LINBIT's)."""
        tagged = vm.tagged_members(self.client.list_volume_definitions(resource))
        numbers = sorted(n for n, tag in tagged.items() if tag == name)
        if not numbers:
            raise OperationFailed(f"volume {name!r} vanished from {resource} right after it was made")
        for extra in numbers[1:]:
            with suppress(NotFound):
                self.client.delete_volume_definition(resource, extra)
        return numbers[0]

    def _compare_member(
        self, rd: ResourceDefinition, number: int, wanted: rec.Wanted, any_size: bool
    ) -> Volume:
        vd = rd.volume_definition(number) or VolumeDefinition(number)
        props = vd.props
        problems = []
        size_kib = vd.size_kib
        if not any_size and wanted.size_kib not in {size_kib, int(props.get(rec.REQUESTED_KIB, "0") or 0)}:
            problems.append(f"its size is {size_kib * 1024} bytes, {wanted.size_kib * 1024} were requested")
        fs_type = props.get(rec.FS_TYPE)
        if fs_type and fs_type != (wanted.fs_type or rec.BLOCK):
            problems.append(f"its filesystem is {fs_type}, not {wanted.fs_type or 'block'}")
        if (props.get(rec.SOURCE) or None) != wanted.source:
            problems.append(
                f"its content source is {props.get(rec.SOURCE) or 'none'}, not {wanted.source or 'none'}"
            )
        if problems:
            raise AlreadyExists(
                f"volume {wanted.name!r} already exists and differs: {'; '.join(problems)}",
                volume=wanted.volume_id,
            )
        return member_volume(rd, number, self.client.view_resources([rd.name]))

    def _restore_member(
        self,
        wanted: rec.Wanted,
        target: Target,
        rd: ResourceDefinition | None,
        snapshot_ref: str,
        any_size: bool,
    ) -> int:
        """Claim the snapshot's volume number in the target; the first restore brings back the resource."""
        source, number, snap_name = vm.split_snapshot_id(snapshot_ref)
        try:
            snap = self.client.get_snapshot(source, snap_name)
        except (NotFound, InvalidArgument):
            raise NotFound(f"snapshot {snapshot_ref!r} not found", snapshot=snapshot_ref) from None
        if number not in vm.snapshot_numbers(snap):
            raise NotFound(f"snapshot {snapshot_ref!r} not found", snapshot=snapshot_ref)
        if not rec.snapshot_from(snap).ready:
            raise FailedPrecondition(f"snapshot {snapshot_ref!r} is not ready yet", snapshot=snapshot_ref)
        snap_vd = snap.volume_definition(number)
        vd_props = snap_vd.props if snap_vd else {}
        self.copies.check_same_content(
            wanted, rec.stored_fs_type(vd_props, vd_props), f"snapshot {snapshot_ref!r}"
        )
        origin = f"{source}/{snap_name}"
        resource = target.resource
        if rd is None:
            self._restore_resource(resource, wanted, target, source, snap_name, snap, origin, number)
            rd = self.reads.read_rd(resource)
        elif rd.props.get(RESTORED_FROM, "").lower() != origin.lower():
            raise FailedPrecondition(
                f"consistency group {target.group} already exists and was not restored from snapshot "
                f"{snapshot_ref!r}; restore a group snapshot into a group that does not exist yet"
            )
        vd = rd.volume_definition(number) if rd else None
        if vd is None:
            raise FailedPrecondition(
                f"volume number {number} of {resource} is gone; it cannot be restored again"
            )
        holder = vm.tagged_members([vd]).get(number)
        if holder and holder != wanted.name:
            raise AlreadyExists(
                f"volume number {number} restored into {resource} already belongs to volume {holder!r}",
                volume=resource,
            )
        size_kib = vd.size_kib
        if wanted.size_kib < size_kib and not any_size:
            raise InvalidArgument(
                f"requested size {wanted.size_kib * 1024} bytes is smaller than snapshot {snapshot_ref!r} "
                f"({size_kib * 1024} bytes)"
            )
        if wanted.size_kib > size_kib and not any_size:
            self.client.resize_volume_definition(resource, wanted.size_kib, number)
        claimed = replace(wanted, size_kib=max(size_kib, wanted.size_kib if not any_size else size_kib))
        self.client.modify_volume_definition(
            resource, number, override_props=self._member_props(claimed, False)
        )
        return number

    def _restore_resource(
        self,
        resource: str,
        wanted: rec.Wanted,
        target: Target,
        source: str,
        snap_name: str,
        snap: SnapshotDefinition,
        origin: str,
        number: int,
    ) -> None:
        """The whole resource from the snapshot, members untagged (each restore claims its own)."""
        props = {RESTORED_FROM: origin, **({GROUP_PROP: target.group} if target.group else {})}
        try:
            self.client.create_resource_definition(resource, wanted.resource_group, props)
        except AlreadyExists:
            raise Busy(f"volume {wanted.name!r} is being created by another request; retry") from None
        try:
            with long_operation(resource, f"restoring from snapshot {source}/{snap_name}") as op:
                self.copies.restore_into(resource, source, snap_name, snap, [], op)
            for vd in self.client.list_volume_definitions(resource):
                vd_number = vd.number
                if target.group is None and vd_number != number:
                    # A lone restore keeps only its own volume.
                    self.client.delete_volume_definition(resource, vd_number)
                    continue
                stale = [k for k in vd.props if k == vm.MEMBER_NAME or k.startswith(rec.AUX)]
                if stale:
                    self.client.modify_volume_definition(resource, vd_number, delete_props=stale)
            # Like a plain restore's autoplace: diskless_on_remaining is stated (false, the default).
            self.client.autoplace(resource, diskless_on_remaining=False)
            # Restore copies the source's definition properties: its group, its pending attaches.
            self.client.modify_resource_definition(
                resource,
                override_props=props,
                delete_props=[] if target.group else [GROUP_PROP],
                delete_namespaces=[rec.ATTACH_PENDING.rstrip("/")],
            )
        except VolumeError:
            self.reads.remove_quietly(resource)
            raise

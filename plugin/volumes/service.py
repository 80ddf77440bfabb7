"""The one core both front ends call: volumes, snapshots and attachments over LINSTOR.

A volume is a LINSTOR resource definition with volume number 0. A parameter set is a
resource group, ensured once per process and remembered. A plain create is a single
``spawn`` call on that group (definition, volume and placement in one LINSTOR
transaction), so a failed placement leaves nothing behind; restore and clone are
multi-step and roll back what they made when a later step fails. Everything the service
needs to answer later lives in LINSTOR (see :mod:`plugin.volume_records`); the only
local state is a cache of known resource groups (:mod:`plugin.volumes.resource_groups`) and
per-volume locks that let concurrent calls for the same volume converge instead of
racing.

The service is a façade over collaborators, each given what it needs when the service is
made: creation (:mod:`plugin.volumes.create`), restore and clone
(:mod:`plugin.volumes.copies`), half-made volumes (:mod:`plugin.volumes.settle`),
snapshots (:mod:`plugin.volumes.snapshots`), attach and detach
(:mod:`plugin.volumes.attach`), publication records (:mod:`plugin.volumes.publications`),
shared writers (:mod:`plugin.volumes.shared_writers`) and mutable parameters
(:mod:`plugin.volumes.modify`). Delete, get, list, expand, topology, capacity and health
are its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import replace
from typing import Protocol

from plugin import names
from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import (
    AlreadyExists,
    FailedPrecondition,
    InUse,
    InvalidArgument,
    NoSpace,
    NotFound,
    VolumeError,
)
from plugin.health import controller_reachable
from plugin.keyed_locks import KeyedLocks
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import Resource, ResourceDefinition, SnapshotDefinition
from plugin.list_collector import collector_paused_for_list
from plugin.models import Attachment, Snapshot, Summary, TopologyRequirement, Volume
from plugin.params import placement
from plugin.params.model import VolumeParams
from plugin.volumes import in_use, listing, sizes, sync_wait
from plugin.volumes.attach import VolumeAttachments
from plugin.volumes.copies import VolumeCopies
from plugin.volumes.create import VolumeCreation, volume_id_for
from plugin.volumes.modify import Changes, VolumeModifications
from plugin.volumes.node_reads import NodeReads, PendingRecord
from plugin.volumes.publications import NodeRecord, Publications, Publishing
from plugin.volumes.reads import VolumeReads, require_id
from plugin.volumes.resource_groups import ResourceGroups
from plugin.volumes.settle import VolumeSettling
from plugin.volumes.shared_writers import SharedWriters
from plugin.volumes.snapshots import VolumeSnapshots

log = logging.getLogger(__name__)

HEALTH_CACHE_SECONDS = 2.0


class Attaching(Protocol):
    """What the service asks of its attachments (plain, or a consistency group's members)."""

    def attach(
        self, volume_id: str, node: str, volume_number: int = 0, *, publish: Publishing | None = None
    ) -> Attachment: ...
    def detach(self, volume_id: str, node: str, *, unpublish: bool = False) -> ResourceDefinition | None: ...


class PublicationRecords(Protocol):
    """What the service asks of its publication records."""

    def published_on_node(self, node: str) -> list[str]: ...


class SnapshotKeeping(Protocol):
    """What the service asks of its snapshots."""

    def create_snapshot(self, volume_id: str, name: str) -> Snapshot: ...
    def delete_snapshot(self, snapshot_id: str) -> None: ...
    def get_snapshot(self, snapshot_id: str) -> Snapshot: ...
    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]: ...


class VolumeService:
    """Create, delete, resize, snapshot, restore, clone, attach and detach LINSTOR volumes."""

    def __init__(
        self, client: LinstorClient, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._clock = clock  # for the health cache
        self.config = config
        self.groups = ResourceGroups(client)
        #: Serialises work on one volume in this process (LINSTOR names are case-insensitive).
        self.locks = KeyedLocks("volume", normalize=lambda key: str(key).upper())
        self.reads = VolumeReads(client)
        self.settling = VolumeSettling(client, self.reads)
        self.copies = VolumeCopies(client, self.reads)
        self.creation = VolumeCreation(
            client, config, self.groups, self.locks, self.reads, self.copies, self.settling
        )
        # A consistency-group service wraps these three for members.
        self.snapshots: SnapshotKeeping = VolumeSnapshots(client, self.locks, self.reads, self.settling)
        self.attachments: Attaching = VolumeAttachments(client, self.locks)
        self.publication_records: PublicationRecords = Publications(client)
        self.shared_writers = SharedWriters(client)
        # The service's own get_volume, so a subclass that reads volumes otherwise is followed.
        self.modifications = VolumeModifications(client, self.locks, self.get_volume)
        # Likewise its own addresses and records, which a consistency-group service reads per member.
        self.node_reads = NodeReads(client, self._address, self._volume_record)
        self._health: tuple[float, bool] | None = None
        self._health_lock = threading.Lock()

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
        """Create a volume, or return the existing one made by the same request.

        Same name with other size, filesystem, parameter set or source is AlreadyExists.
        """
        return self.creation.create_volume(name, size_bytes, params, source=source, topology=topology)

    @staticmethod
    def volume_id_for(name: str, params: VolumeParams) -> str:
        """The volume id a create with this name and these parameters makes."""
        return volume_id_for(name, params)

    def create_volume_with(
        self,
        name: str,
        size_bytes: int,
        params: VolumeParams,
        changes: Changes,
        *,
        source: str | None = None,
        topology: TopologyRequirement | None = None,
    ) -> Volume:
        """CreateVolume with mutable parameters: create, then apply them; a new volume that
        cannot take them is removed again, so a failed request leaves nothing behind."""
        existed = True
        try:
            self.get_volume(volume_id_for(name, params))
        except (NotFound, InvalidArgument):
            existed = False
        volume = self.create_volume(name, size_bytes, params, source=source, topology=topology)
        if not changes:
            return volume
        try:
            return self.modify_volume(volume.id, changes)
        except VolumeError:
            if not existed:
                with suppress(VolumeError):
                    self.delete_volume(volume.id)
            raise

    # ------------------------------------------------------------------ delete, get, list, expand

    def delete_volume(self, volume_id: str) -> None:
        """Delete a volume; a missing one is fine. Refuses while it is in use or has snapshots.

        Two REST calls in the steady state: a view of the resources (a stale in-use report,
        which lags a close on the node, gets a bounded moment to clear) and the DELETE of
        the definition. LINSTOR's DELETE itself refuses a definition with snapshots (514)
        before it changes anything, so the snapshots are read only to name them after that
        refusal. Diskless resources (attachments) are removed first, as LINSTOR does, and
        only after the snapshots were checked, so a refused delete leaves them in place.
        """
        if not rec.possible_volume_id(volume_id):
            return
        with self.locks.lock(volume_id):
            resources: list[Resource] = []

            def busy_nodes() -> list[str]:
                resources[:] = self.client.view_resources([volume_id])
                return sorted(r.node for r in resources if r.in_use)

            busy = in_use.wait_until_free(busy_nodes)
            if busy:
                raise InUse(
                    f"volume {volume_id} is in use on {', '.join(busy)}; unmount it there first", nodes=busy
                )
            diskless = [r.node for r in (rec.replica_from(x) for x in resources) if r.diskless]
            if diskless:
                try:
                    snapshots = self.client.list_snapshots(volume_id)
                except NotFound:
                    return
                if snapshots:
                    raise self._has_snapshots(volume_id, snapshots)
                for node in diskless:
                    with suppress(NotFound):
                        self.client.delete_resource(volume_id, node)
            try:
                in_use.retry_while_in_use(lambda: self.client.delete_resource_definition(volume_id))
            except NotFound:
                return
            except InUse as exc:
                nodes = [
                    r.node
                    for r in (rec.replica_from(x) for x in self.client.view_resources([volume_id]))
                    if r.in_use
                ]
                where = ", ".join(nodes) if nodes else "a node"
                raise InUse(
                    f"volume {volume_id} is in use on {where}; unmount it there first",
                    nodes=nodes,
                    **exc.details,
                ) from None
            except AlreadyExists as exc:
                if rc.code_of(exc) != rc.FAIL_EXISTS_SNAPSHOT_DFN:
                    raise
                raise self._has_snapshots(volume_id, self.client.list_snapshots(volume_id)) from None

    @staticmethod
    def _has_snapshots(volume_id: str, snapshots: list[SnapshotDefinition]) -> FailedPrecondition:
        listed = sorted(s.name for s in snapshots)
        return FailedPrecondition(
            f"volume {volume_id} still has snapshots ({', '.join(listed)}); delete them first, "
            "deleting the volume would lose them",
            snapshots=listed,
        )

    def get_volume(self, volume_id: str) -> Volume:
        return self._read_volume(volume_id)[0]

    def device_on(self, volume_id: str, node: str, must_exist: bool = True) -> str | None:
        """The volume's device on ``node`` (None: not attached there), one REST call when it is."""
        return self.node_reads.device_on(volume_id, node, must_exist)

    def volume_on(self, volume_id: str, node: str) -> tuple[Volume, str | None]:
        """The volume's record without its replicas, and its device on ``node`` (None: not attached)."""
        return self.node_reads.volume_on(volume_id, node)

    def device_then_record(self, volume_id: str, node: str) -> tuple[str | None, PendingRecord]:
        """The volume's device on ``node`` now, its record read meanwhile (see ``NodeReads``)."""
        return self.node_reads.device_then_record(volume_id, node)

    def _volume_record(self, volume_id: str) -> Volume:
        """The volume from its definition alone (no replicas): one REST call."""
        return self._read_volume(volume_id, replicas=False)[0]

    def _address(self, volume_id: str) -> tuple[str, int]:
        """The resource and volume number that hold the volume's data."""
        require_id(volume_id)
        return volume_id, 0

    def _read_volume(self, volume_id: str, replicas: bool = True) -> tuple[Volume, list[Resource]]:
        """The volume and the resources it was read from (its definition, then its resources)."""
        require_id(volume_id)
        return self._plain_volume(volume_id, self.reads.read_rd(volume_id), replicas)

    def _plain_volume(
        self, volume_id: str, rd: ResourceDefinition | None, replicas: bool = True
    ) -> tuple[Volume, list[Resource]]:
        """A volume that has its resource definition to itself, and its resources (if ``replicas``)."""
        if rd is None or rd.volume_definition(0) is None or not rec.is_complete(rd):
            raise NotFound(f"volume {volume_id} not found", volume=volume_id)
        resources = self.client.view_resources([rd.name]) if replicas else []
        volume = rec.volume_from(rd, resources)
        if volume is None:
            raise NotFound(f"volume {volume_id} not found", volume=volume_id)
        return volume, resources

    def _publication_key(self, volume_id: str) -> str:
        """The resource property the volume's publications are recorded under."""
        return rec.PUBLISHED

    def publish_target(self, volume_id: str, node: str) -> tuple[Volume, NodeRecord]:
        """The volume and its resource on ``node``, from the one read a publish needs.

        The volume's resources are listed with their properties and volumes anyway, so the
        node's resource (its publication tokens, its marks, its device) comes from that
        listing instead of being read again by the check, the attach and the record.
        """
        volume, resources = self._read_volume(volume_id)
        here = next((r for r in resources if r.node.lower() == node.lower()), None)
        return volume, NodeRecord(self._publication_key(volume_id), here)

    def find_volume(self, name: str) -> Volume | None:
        try:
            volume_id = names.resource_name_for(name)
        except InvalidArgument:
            return None
        try:
            volume = self.get_volume(volume_id)
        except NotFound:
            return None
        return volume if volume.name == name else None

    def list_volumes(self, with_replicas: bool = False) -> list[Volume]:
        """Every volume, in id order; read a page at a time (one REST call per
        ``config.list_page_size`` definitions, and per half that many replicas)."""
        return list(self.iter_volumes(with_replicas))

    def iter_volumes(self, with_replicas: bool = False) -> Iterator[Volume]:
        """:meth:`list_volumes` one volume at a time, for callers that keep less than a Volume."""
        for rd, resources in listing.definitions(self.client, with_replicas):
            if not rec.is_complete(rd):
                continue
            volume = rec.volume_from(rd, resources or None)
            if volume is not None:
                yield volume

    def list_summaries(self, props: Sequence[str] = ()) -> list[Summary]:
        """Id, name and creation time of every volume with ``props`` (LINSTOR's ``key`` or
        ``key=value`` filters, applied by the controller and checked again here), in id order.

        For lists of names: a page of definitions at a time, without replicas, and a
        fraction of the per-volume work of :meth:`list_volumes`.
        """
        summaries = []
        with collector_paused_for_list():
            for head in listing.heads(self.client, props):
                summary = rec.summary_from(head)
                if summary is not None:
                    summaries.append(summary)
        return summaries

    def expand_volume(self, volume_id: str, size_bytes: int) -> Volume:
        """Grow a volume; the same size is a no-op, a smaller size is an error."""
        require_id(volume_id)
        with self.locks.lock(volume_id):
            volume = self.get_volume(volume_id)
            new_kib = sizes.grow_kib(volume_id, volume.size_bytes, size_bytes)
            if new_kib * 1024 == volume.size_bytes:
                return volume
            try:
                sync_wait.retry_while_syncing(
                    lambda: self.client.resize_volume_definition(volume_id, new_kib),
                    f"grow volume {volume_id}",
                    lambda: self.settling.lagging(volume_id),
                )
            except NoSpace as exc:
                raise NoSpace(
                    f"not enough free space to grow volume {volume_id}: {exc.message}", **exc.details
                ) from None
            return replace(volume, size_bytes=new_kib * 1024)

    # ------------------------------------------------------------------ mutable parameters

    def modify_volume(self, volume_id: str, changes: Changes) -> Volume:
        """Bring the volume to what ``changes`` asks; already there is a no-op."""
        return self.modifications.modify_volume(volume_id, changes)

    # ------------------------------------------------------------------ snapshots

    def create_snapshot(self, volume_id: str, name: str) -> Snapshot:
        """Snapshot a volume; the same name again returns it, on another volume it is AlreadyExists."""
        return self.snapshots.create_snapshot(volume_id, name)

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshots.delete_snapshot(snapshot_id)

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        return self.snapshots.get_snapshot(snapshot_id)

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        return self.snapshots.list_snapshots(volume_id)

    # ------------------------------------------------------------------ attachments and publications

    def attach(
        self, volume_id: str, node: str, volume_number: int = 0, *, publish: Publishing | None = None
    ) -> Attachment:
        """Make the volume available on a node: its replica there, else a diskless one.

        ``publish`` (from :meth:`publish_target`) records a publication as part of the attach.
        """
        return self.attachments.attach(volume_id, node, volume_number, publish=publish)

    def detach(self, volume_id: str, node: str, *, unpublish: bool = False) -> ResourceDefinition | None:
        """Remove the diskless resource attach made; replicas with data are never touched.

        With ``unpublish`` the volume's publication record on the node goes as well. Returns
        the resource definition the detach read (for :meth:`release_shared_writer`), or None.
        """
        return self.attachments.detach(volume_id, node, unpublish=unpublish)

    def published_on_node(self, node: str) -> list[str]:
        """Ids of the volumes published to the node, read from LINSTOR."""
        return self.publication_records.published_on_node(node)

    def admit_shared_writer(self, volume_id: str, node: str) -> None:
        """Before a read-write RWX block publication to ``node``: allow a second primary."""
        self.shared_writers.admit_shared_writer(volume_id, node)

    def release_shared_writer(self, volume_id: str, read: ResourceDefinition | None = None) -> None:
        """After an unpublish: drop the two-primaries option once one writer is left.

        ``read`` is the definition the unpublish's detach already read, so it is not read again.
        """
        self.shared_writers.release_shared_writer(volume_id, read)

    # ------------------------------------------------------------------ nodes, capacity, health

    def node_topology(self, node: str) -> dict[str, str]:
        """CSI topology segments of a node, as the official driver reports them."""
        if not names.is_valid_node_name(node):
            raise NotFound(f"node {node!r} is not a LINSTOR node", node=node)
        try:
            info = self.client.get_node(node)
        except NotFound:
            raise NotFound(f"node {node} is not a LINSTOR node", node=node) from None
        segments = {placement.HOSTNAME_KEY: node}
        if self.config.label_by_storage_pool:
            for pool in self.client.node_storage_pools(node):
                segments[f"{placement.POOL_KEY_PREFIX}{pool.name}"] = "true"
        prefix = self.config.property_namespace + "/"
        for key, value in info.props.items():
            if key.startswith(prefix) and not key.startswith(rec.AUX):
                segments[key[len(prefix) :]] = str(value)
        return segments

    def capacity_bytes(self, params: VolumeParams, segments: Mapping[str, str] | None = None) -> int:
        """Free space of the pools a volume with these parameters could use, in bytes."""
        nodes: list[str] | None = None
        pools_needed = bool(segments) and any(k.startswith(placement.POOL_KEY_PREFIX) for k in segments or {})
        all_pools = self.client.list_storage_pools(storage_pools=params.storage_pools)
        if segments:
            node_list = None
            if any(
                k != placement.HOSTNAME_KEY and not k.startswith(placement.POOL_KEY_PREFIX) for k in segments
            ):
                node_list = self.client.list_nodes()
            nodes = placement.segment_nodes(
                segments, node_list, all_pools if pools_needed else [], self.config.property_namespace
            )
        matching = [pool for pool in all_pools if not pool.diskless and (nodes is None or pool.node in nodes)]
        if not params.overprovision:
            return sum(pool.free_kib or 0 for pool in matching) * 1024
        # Like the official driver: total x factor - what volumes already reserve in those pools.
        reserved = self._reserved_kib(nodes)
        total = 0
        for pool in matching:
            key = (pool.node, pool.name)
            total += max(0, int((pool.total_kib or 0) * params.overprovision) - reserved.get(key, 0))
        return total * 1024

    def _reserved_kib(self, nodes: list[str] | None) -> dict[tuple[str, str], int]:
        reserved: dict[tuple[str, str], int] = {}
        for resource in self.client.iter_resources(nodes=nodes or ()):
            for volume in resource.volumes:
                size = volume.usable_kib or volume.allocated_kib
                key = (resource.node, volume.storage_pool)
                reserved[key] = reserved.get(key, 0) + size
        return reserved

    def healthy(self) -> bool:
        """Whether a controller answers; cached for a couple of seconds so probes stay cheap."""
        now = self._clock()
        with self._health_lock:
            if self._health and now - self._health[0] < HEALTH_CACHE_SECONDS:
                return self._health[1]
        ok = controller_reachable(self.client)
        with self._health_lock:
            self._health = (self._clock(), ok)
        return ok

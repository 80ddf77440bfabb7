"""The one core both front ends call: volumes, snapshots and attachments over LINSTOR.

A volume is a LINSTOR resource definition with volume number 0. A parameter set is a
resource group, ensured once per process and remembered. A plain create is a single
``spawn`` call on that group (definition, volume and placement in one LINSTOR
transaction), so a failed placement leaves nothing behind; restore and clone are
multi-step and roll back what they made when a later step fails. Everything the service
needs to answer later lives in LINSTOR (see :mod:`plugin.volume_records`); the only
local state is a cache of known resource groups (:mod:`plugin.resource_groups`) and
per-volume locks that let concurrent calls for the same volume converge instead of
racing. Restore and clone live in :mod:`plugin.volume_copy`, attach and detach in
:mod:`plugin.volume_attach`, placement rules in :mod:`plugin.placement`, mutable
parameters in :mod:`plugin.volume_modify`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, suppress
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from plugin import controller_features as features
from plugin import in_use, names, placement, sync_wait
from plugin import linstor_retcodes as rc
from plugin import placement_diagnosis as diagnosis
from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InUse,
    InvalidArgument,
    NodeOffline,
    NoSpace,
    NotFound,
    Unavailable,
    VolumeError,
)
from plugin.keyed_locks import KeyedLocks
from plugin.linstor_client import LinstorClient
from plugin.models import Snapshot, TopologyRequirement, Volume
from plugin.observability import log_fields
from plugin.param_values import human_size
from plugin.params import VolumeParams, minimum_size_bytes, resource_group_name
from plugin.progress import long_operation
from plugin.publications import Publications
from plugin.remote_access import policy_text
from plugin.resource_groups import ResourceGroups
from plugin.shared_writers import SharedWriters
from plugin.volume_attach import VolumeAttachments
from plugin.volume_copy import VolumeCopies
from plugin.volume_modify import VolumeModifications
from plugin.volume_settle import VolumeSettling

log = logging.getLogger(__name__)

HEALTH_CACHE_SECONDS = 2.0
CREATE_RACE_CODES = {
    rc.FAIL_EXISTS_RSC_DFN,
    rc.FAIL_EXISTS_RSC,
    rc.FAIL_EXISTS_VLM_DFN,
    rc.FAIL_EXISTS_RSC_GRP,
}
MAX_SIZE_KIB = 1 << 40  # LINSTOR's largest volume definition


def _kib(size_bytes: int) -> int:
    return max(1, math.ceil(size_bytes / 1024))


def _require_id(volume_id: str) -> None:
    if not rec.possible_volume_id(volume_id):
        raise NotFound(f"volume {volume_id!r} not found", volume=volume_id)


class VolumeService(
    VolumeAttachments, VolumeCopies, VolumeSettling, Publications, VolumeModifications, SharedWriters
):
    """Create, delete, resize, snapshot, restore, clone, attach and detach LINSTOR volumes."""

    def __init__(
        self, client: LinstorClient, config: Config, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.client = client
        self._clock = clock  # for the health cache
        self.config = config
        self.groups = ResourceGroups(client)
        self._volume_locks = KeyedLocks("volume", normalize=lambda key: str(key).upper())
        self._health: tuple[float, bool] | None = None
        self._health_lock = threading.Lock()

    # ------------------------------------------------------------------ locking

    def _locked(self, key: str) -> AbstractContextManager[None]:
        """Serialise work on one volume in this process (LINSTOR names are case-insensitive)."""
        return self._volume_locks.lock(key)

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
        if not name:
            raise InvalidArgument("a volume needs a name")
        if size_bytes < 0:
            raise InvalidArgument(f"volume size must not be negative, got {size_bytes}")
        volume_id = self._volume_id_for(name, params)
        minimum = minimum_size_bytes(params.fs_type)
        size_kib = _kib(max(size_bytes, minimum))
        if size_kib > MAX_SIZE_KIB:
            raise InvalidArgument(
                f"volume size {human_size(size_bytes, exact=True)} is larger than LINSTOR's limit of 1 PiB"
            )
        if source is not None:
            kind, _, ref = source.partition(":")
            if kind not in ("snapshot", "volume") or not ref:
                raise InvalidArgument(f"content source {source!r} must be 'snapshot:<id>' or 'volume:<id>'")
        with self._locked(volume_id):
            group = resource_group_name(params)
            # Multi-step creates always look first. A plain create looks first only while its
            # group is new to this process, so that a repeated request with other parameters
            # is refused without leaving a new resource group behind; afterwards it is one spawn.
            existing = self._read_rd(volume_id) if source or not self.groups.is_known(group) else None
            wanted = rec.Wanted(
                volume_id=volume_id,
                name=name,
                size_kib=size_kib,
                resource_group=group,
                fs_type=params.fs_type,
                mkfs_opts=params.mkfs_opts,
                mount_opts=tuple(params.mount_opts),
                source=source,
                extra=tuple(sorted(params.extra.items())),
                remote_access=policy_text(params.allow_remote_volume_access, params.remote_access_from_same),
            )
            if existing is not None and source is not None:
                resumed = self._resume_clone(existing, wanted, params)
                if resumed is not None:
                    return resumed
            if existing is not None:
                existing = self._settle_existing(existing)
            if existing is not None:
                if source is None and self._is_ours(existing, wanted):
                    return self._converge(wanted, size_bytes == 0)
                return self._compare_existing(existing, wanted, size_bytes == 0)
            self.client.features.require(features.SPAWN_PROPS)  # before the group is made
            self.groups.ensure(params)
            nodes = self._candidate_nodes(params, topology)
            if source is None:
                return self._spawn(wanted, params, nodes)
            kind, _, ref = source.partition(":")
            if kind == "snapshot":
                return self._create_from_snapshot(wanted, params, ref, nodes, size_bytes == 0)
            return self._create_from_volume(wanted, params, ref, nodes, size_bytes == 0)

    def _volume_id_for(self, name: str, params: VolumeParams) -> str:
        if params.use_pvc_name:
            pvc = params.extra.get("csi.storage.k8s.io/pvc/name", "")
            namespace = params.extra.get("csi.storage.k8s.io/pvc/namespace", "")
            from_pvc = names.resource_name_from_pvc(namespace, pvc)
            if from_pvc:
                return from_pvc
        return names.resource_name_for(name)

    def _settle_existing(self, rd: dict[str, Any]) -> dict[str, Any] | None:
        """An RD half-made by an interrupted restore or clone is removed so the create starts clean."""
        props = rec.props_of(rd)
        if props.get(rec.CREATING) == rd.get("name") and "CLONING" not in (rd.get("flags") or ()):
            log_fields(log, logging.WARNING, "removing half-made volume", volume=rd.get("name"))
            self.client.delete_resource_definition(str(rd["name"]))
            return None
        return rd

    def _compare_existing(self, rd: Mapping[str, Any], wanted: rec.Wanted, any_size: bool) -> Volume:
        flags = set(rd.get("flags") or ())
        if flags & {"CLONING", "DELETE"}:
            state = "cloned" if "CLONING" in flags else "deleted"
            raise Busy(
                f"volume {wanted.volume_id} is still being {state}; retry later", volume=wanted.volume_id
            )
        volume = rec.volume_from(rd)
        props = rec.props_of(rd)
        if volume is None:
            raise AlreadyExists(
                f"LINSTOR resource {wanted.volume_id} exists but holds no volume (only snapshots?); "
                "choose another name",
                volume=wanted.volume_id,
            )
        ours = props.get(rec.VOLUME_ID) == rd.get("name")
        problems: list[str] = []
        if ours and props.get(rec.NAME) != wanted.name:
            problems.append(f"it belongs to volume {props.get(rec.NAME)!r}")
        current_kib = volume.size_bytes // 1024
        requested = {current_kib, int(props.get(rec.REQUESTED_KIB, "0") or 0)}
        if not any_size and wanted.size_kib not in requested:
            problems.append(
                f"its size is {human_size(volume.size_bytes, exact=True)}, "
                f"{human_size(wanted.size_kib * 1024, exact=True)} was requested"
            )
        if ours and props.get(rec.RESOURCE_GROUP) != wanted.resource_group:
            problems.append(
                f"it was made with other parameters (resource group {props.get(rec.RESOURCE_GROUP)}, "
                f"now {wanted.resource_group})"
            )
        if (ours or volume.fs_type) and volume.fs_type != wanted.fs_type:
            problems.append(
                f"its filesystem is {volume.fs_type or 'none (block)'}, not {wanted.fs_type or 'block'}"
            )
        if wanted.source and not ours:
            problems.append(f"it was not made from {wanted.source} by this plugin")
        elif ours and (props.get(rec.SOURCE) or None) != wanted.source:
            problems.append(
                f"its content source is {props.get(rec.SOURCE) or 'none'}, not {wanted.source or 'none'}"
            )
        if problems:
            raise AlreadyExists(
                f"volume {wanted.name!r} already exists and differs: {'; '.join(problems)}",
                volume=wanted.volume_id,
            )
        return self._with_replicas(rd)

    def _candidate_nodes(
        self, params: VolumeParams, topology: TopologyRequirement | None
    ) -> tuple[list[str], bool]:
        """Nodes replicas should (or, when required, must) go to."""
        if params.nodes or params.placement_policy == "autoplace":
            return [], False
        need_listing, need_pools = placement.needs_node_listing(topology)
        nodes = self.client.list_nodes() if need_listing else None
        pools = self.client.list_storage_pools() if need_pools else None
        return placement.topology_nodes(topology, nodes, pools, self.config.property_namespace)

    def _spawn(self, wanted: rec.Wanted, params: VolumeParams, candidates: tuple[list[str], bool]) -> Volume:
        now = datetime.now(UTC)
        props = {**wanted.aux_props(now), **wanted.filesystem_props(), rec.VOLUME_ID: wanted.volume_id}
        nodes, required = candidates
        sf: dict[str, Any] = {}
        rest_after = 0
        if params.nodes:
            sf = {"node_name_list": list(params.nodes), "place_count": len(params.nodes)}
        elif nodes:
            sf = {"node_name_list": nodes}
            if len(nodes) < params.place_count:
                sf["place_count"] = len(nodes)
                rest_after = params.place_count - len(nodes)
        try:
            try:
                self._spawn_call(wanted, props, sf, params)
            except NoSpace as exc:
                if nodes and not (required and not params.allow_remote_volume_access):
                    raise  # retried below without the topology preference
                raise self._placement_failed(exc, wanted, params, nodes if required else []) from None
        except (NoSpace, NotFound) as exc:
            # NotFound here: a topology node that is no LINSTOR node (a client-only host).
            if isinstance(exc, NotFound) and (params.nodes or rc.code_of(exc) != rc.FAIL_NOT_FOUND_NODE):
                raise
            if not nodes or (required and not params.allow_remote_volume_access):
                raise
            # The preferred (or, with remote access, merely requisite) nodes are full:
            # any node will do, the volume is reachable from everywhere.
            log_fields(log, logging.INFO, "placing without topology preference", volume=wanted.volume_id)
            rest_after = 0
            try:
                self._spawn_call(wanted, props, {}, params)
            except NoSpace as again:
                raise self._placement_failed(again, wanted, params, []) from None
        except AlreadyExists as exc:
            if rc.code_of(exc) not in CREATE_RACE_CODES:
                raise
            return self._converge(wanted)
        except Unavailable:
            # The spawn may have reached LINSTOR: if it did, the volume is there now.
            rd = self._read_rd_quietly(wanted.volume_id)
            if rd is None:
                raise
            return self._converge(wanted)
        except VolumeError as exc:
            # LINSTOR commits the definition before its satellites deploy it: a deployment that
            # failed leaves a half-made volume, which is never reported as created.
            self._drop_half_made(wanted, exc)
            raise
        try:
            if rest_after:
                self.client.autoplace(wanted.volume_id, diskless_on_remaining=params.diskless_on_remaining)
            for node in params.client_nodes:
                self.client.create_resource(
                    wanted.volume_id, node, diskless=True, storage_pool=params.diskless_storage_pool
                )
        except VolumeError:
            self._remove_quietly(wanted.volume_id)
            raise
        rd = {
            "name": wanted.volume_id,
            "props": props,
            "resource_group_name": wanted.resource_group,
            "volume_definitions": [{"volume_number": 0, "size_kib": wanted.size_kib}],
        }

        def with_replicas() -> Volume:
            built = rec.volume_from(rd, self.client.view_resources([wanted.volume_id]))
            assert built is not None  # rd has volume 0
            return built

        return self._read_back(wanted, with_replicas)

    def _spawn_call(
        self, wanted: rec.Wanted, props: dict[str, str], sf: dict[str, Any], params: VolumeParams
    ) -> None:
        # A satellite makes the filesystem while the spawn runs: a large volume can take a while.
        what = f"creating in LINSTOR ({human_size(wanted.size_kib * 1024)}, {wanted.fs_type or 'raw block'})"

        def spawn() -> None:
            with long_operation(wanted.volume_id, what):
                self.client.spawn(
                    wanted.resource_group,
                    wanted.volume_id,
                    wanted.size_kib,
                    definition_props=props,
                    select_filter=sf,
                )

        try:
            spawn()
        except NotFound as exc:
            if rc.code_of(exc) != rc.FAIL_NOT_FOUND_RSC_GRP:
                raise self._placement_error(exc, wanted, params) from None
            # The group vanished behind our back (an operator deleted it): make it again.
            self.groups.forget(wanted.resource_group)
            self.groups.ensure(params)
            spawn()

    def _placement_failed(
        self, exc: NoSpace, wanted: rec.Wanted, params: VolumeParams, allowed: list[str]
    ) -> VolumeError:
        """LINSTOR's "not enough nodes" made specific with one read of the storage pools."""
        return diagnosis.refusal(
            exc, wanted.name, wanted.size_kib, params, allowed, self.client.list_storage_pools
        )

    @staticmethod
    def _placement_error(exc: NotFound, wanted: rec.Wanted, params: VolumeParams) -> VolumeError:
        if rc.code_of(exc) == rc.FAIL_NOT_FOUND_NODE:
            return NotFound(
                f"cannot place volume {wanted.name!r} ({diagnosis.placement_asked(params)}): {exc.message}",
                **exc.details,
            )
        return exc

    def _read_rd_quietly(self, volume_id: str) -> dict[str, Any] | None:
        try:
            return self._read_rd(volume_id)
        except VolumeError:
            return None

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
        with self._locked(volume_id):
            resources: list[dict[str, Any]] = []

            def busy_nodes() -> list[str]:
                resources[:] = self.client.view_resources([volume_id])
                return sorted(
                    str(r.get("node_name")) for r in resources if (r.get("state") or {}).get("in_use")
                )

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
    def _has_snapshots(volume_id: str, snapshots: list[dict[str, Any]]) -> FailedPrecondition:
        listed = sorted(str(s.get("name")) for s in snapshots)
        return FailedPrecondition(
            f"volume {volume_id} still has snapshots ({', '.join(listed)}); delete them first, "
            "deleting the volume would lose them",
            snapshots=listed,
        )

    def get_volume(self, volume_id: str) -> Volume:
        _require_id(volume_id)
        rd = self._read_rd(volume_id)
        if rd is None or rec.volume_definition(rd) is None or not rec.is_complete(rd):
            raise NotFound(f"volume {volume_id} not found", volume=volume_id)
        return self._with_replicas(rd)

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
        """Every volume; one REST call, two with replicas."""
        rds = self.client.list_resource_definitions(with_volume_definitions=True)
        by_rd: dict[str, list[dict[str, Any]]] = {}
        if with_replicas:
            for resource in self.client.view_resources():
                by_rd.setdefault(str(resource.get("name", "")).upper(), []).append(resource)
        volumes = []
        for rd in rds:
            if not rec.is_complete(rd):
                continue
            volume = rec.volume_from(rd, by_rd.get(str(rd.get("name", "")).upper()))
            if volume is not None:
                volumes.append(volume)
        return volumes

    def expand_volume(self, volume_id: str, size_bytes: int) -> Volume:
        """Grow a volume; the same size is a no-op, a smaller size is an error."""
        _require_id(volume_id)
        with self._locked(volume_id):
            volume = self.get_volume(volume_id)
            new_kib = _kib(size_bytes)
            if new_kib > MAX_SIZE_KIB:
                too_big = human_size(size_bytes, exact=True)
                raise InvalidArgument(f"volume size {too_big} is larger than LINSTOR's limit of 1 PiB")
            if new_kib * 1024 < volume.size_bytes:
                raise InvalidArgument(
                    f"volume {volume_id} is {human_size(volume.size_bytes, exact=True)}; it can only grow, "
                    f"not shrink to {human_size(size_bytes, exact=True)}"
                )
            if new_kib * 1024 == volume.size_bytes:
                return volume
            try:
                sync_wait.retry_while_syncing(
                    lambda: self.client.resize_volume_definition(volume_id, new_kib),
                    f"grow volume {volume_id}",
                    lambda: self._lagging(volume_id),
                )
            except NoSpace as exc:
                raise NoSpace(
                    f"not enough free space to grow volume {volume_id}: {exc.message}", **exc.details
                ) from None
            return replace(volume, size_bytes=new_kib * 1024)

    # ------------------------------------------------------------------ snapshots

    def create_snapshot(self, volume_id: str, name: str) -> Snapshot:
        """Snapshot a volume; the same name again returns it, on another volume it is AlreadyExists."""
        if not name:
            raise InvalidArgument("a snapshot needs a name")
        _require_id(volume_id)
        snap_name = names.snapshot_name_for(name)
        with self._locked(volume_id):
            for snap in self.client.view_snapshots():
                if str(snap.get("name", "")).lower() != snap_name.lower():
                    continue
                if str(snap.get("resource_name", "")).lower() == volume_id.lower():
                    return rec.snapshot_from(snap)
                raise AlreadyExists(
                    f"snapshot name {name!r} is already used for volume {snap.get('resource_name')}",
                    snapshot=name,
                )
            try:
                sync_wait.retry_while_syncing(
                    lambda: self.client.create_snapshot(volume_id, snap_name, {rec.SNAPSHOT_NAME: name}),
                    f"snapshot volume {volume_id}",
                    lambda: self._lagging(volume_id),
                )
            except AlreadyExists as exc:
                if rc.code_of(exc) != rc.FAIL_EXISTS_SNAPSHOT_DFN:
                    raise
            except NotFound as exc:
                if rc.code_of(exc) == rc.FAIL_NOT_FOUND_RSC:
                    raise self._nothing_to_snapshot(volume_id, exc) from None
                raise NotFound(f"volume {volume_id} not found", volume=volume_id, **exc.details) from None
            except NodeOffline as exc:
                raise NodeOffline(
                    f"cannot snapshot volume {volume_id}: a node holding it is offline ({exc.message})",
                    **exc.details,
                ) from None
            return rec.snapshot_from(self.client.get_snapshot(volume_id, snap_name))

    def delete_snapshot(self, snapshot_id: str) -> None:
        try:
            volume_id, snap = self._resolve_snapshot(snapshot_id)
        except NotFound:
            return
        try:
            group = rec.snapshot_from(self.client.get_snapshot(volume_id, snap)).group_id
            if group:
                raise FailedPrecondition(
                    f"snapshot {snapshot_id!r} is a member of group snapshot {group}; "
                    "delete the group snapshot instead",
                    snapshot=snapshot_id,
                )
            self.client.delete_snapshot(volume_id, snap)
        except NotFound:
            return

    def get_snapshot(self, snapshot_id: str) -> Snapshot:
        volume_id, snap = self._resolve_snapshot(snapshot_id)
        try:
            return rec.snapshot_from(self.client.get_snapshot(volume_id, snap))
        except NotFound:
            raise NotFound(f"snapshot {snapshot_id!r} not found", snapshot=snapshot_id) from None

    def list_snapshots(self, volume_id: str | None = None) -> list[Snapshot]:
        try:
            found = self.client.view_snapshots([volume_id] if volume_id else ())
        except (NotFound, InvalidArgument):
            return []  # an unknown or impossible volume name has no snapshots
        return [rec.snapshot_from(s) for s in found]

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
                segments[f"{placement.POOL_KEY_PREFIX}{pool.get('storage_pool_name')}"] = "true"
        prefix = self.config.property_namespace + "/"
        for key, value in rec.props_of(info).items():
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
        matching = [
            pool
            for pool in all_pools
            if pool.get("provider_kind") != "DISKLESS" and (nodes is None or pool.get("node_name") in nodes)
        ]
        if not params.overprovision:
            return sum(int(pool.get("free_capacity", 0)) for pool in matching) * 1024
        # Like the official driver: total x factor - what volumes already reserve in those pools.
        reserved = self._reserved_kib(nodes)
        total = 0
        for pool in matching:
            key = (pool.get("node_name"), pool.get("storage_pool_name"))
            total += max(
                0, int(float(pool.get("total_capacity", 0)) * params.overprovision) - reserved.get(key, 0)
            )
        return total * 1024

    def _reserved_kib(self, nodes: list[str] | None) -> dict[tuple[Any, Any], int]:
        reserved: dict[tuple[Any, Any], int] = {}
        for resource in self.client.view_resources(nodes=nodes or ()):
            for volume in resource.get("volumes") or ():
                layers = volume.get("layer_data_list") or [{}]
                data = layers[-1].get("data") or {}  # the storage layer is last
                size = int(data.get("usable_size_kib") or volume.get("allocated_size_kib") or 0)
                key = (resource.get("node_name"), volume.get("storage_pool_name"))
                reserved[key] = reserved.get(key, 0) + size
        return reserved

    def healthy(self) -> bool:
        """Whether a controller answers; cached for a couple of seconds so probes stay cheap."""
        now = self._clock()
        with self._health_lock:
            if self._health and now - self._health[0] < HEALTH_CACHE_SECONDS:
                return self._health[1]
        try:
            self.client.controller_version()
            ok = True
        except Unavailable:
            ok = False
        except VolumeError:
            ok = True  # it answered, even if oddly
        with self._health_lock:
            self._health = (self._clock(), ok)
        return ok

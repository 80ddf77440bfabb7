"""Create a volume: one spawn in the steady state, restore or clone through the copies.

A parameter set's resource group is named once per request (``rec.Wanted.resource_group``)
and ensured once per process (:mod:`plugin.volumes.resource_groups`). A plain create looks
at LINSTOR first only while its group is new to this process, then it is a single spawn
call; a failed spawn is diagnosed, retried without topology preference where that is
allowed, or its half-made definition removed (:mod:`plugin.volumes.settle`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from plugin import names
from plugin import placement_diagnosis as diagnosis
from plugin import volume_records as rec
from plugin.config import Config
from plugin.errors import AlreadyExists, Busy, InvalidArgument, NoSpace, NotFound, Unavailable, VolumeError
from plugin.keyed_locks import KeyedLocks
from plugin.linstor import features as features
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from plugin.linstor.records import ResourceDefinition, VolumeDefinition
from plugin.models import TopologyRequirement, Volume
from plugin.observability import log_fields
from plugin.params import placement
from plugin.params.groups import resource_group_name
from plugin.params.model import VolumeParams
from plugin.params.values import human_size
from plugin.progress import long_operation
from plugin.remote_access import policy_text
from plugin.volumes import sizes
from plugin.volumes.copies import VolumeCopies
from plugin.volumes.reads import VolumeReads
from plugin.volumes.resource_groups import ResourceGroups
from plugin.volumes.settle import VolumeSettling

log = logging.getLogger("plugin.volumes.service")

CREATE_RACE_CODES = {
    rc.FAIL_EXISTS_RSC_DFN,
    rc.FAIL_EXISTS_RSC,
    rc.FAIL_EXISTS_VLM_DFN,
    rc.FAIL_EXISTS_RSC_GRP,
}


def wanted_for(
    volume_id: str,
    name: str,
    size_kib: int,
    params: VolumeParams,
    source: str | None,
    *,
    group: str,
    remote_access: str = "",
) -> rec.Wanted:
    """What a create request stores and is compared by, from its parameters."""
    return rec.Wanted(
        volume_id=volume_id,
        name=name,
        size_kib=size_kib,
        resource_group=group,
        fs_type=params.fs_type,
        mkfs_opts=params.mkfs_opts,
        mount_opts=tuple(params.mount_opts),
        source=source,
        extra=tuple(sorted(params.extra.items())),
        remote_access=remote_access,
    )


def volume_id_for(name: str, params: VolumeParams) -> str:
    """The resource name of a volume: from the PVC when the parameters ask for it, else from the name."""
    if params.use_pvc_name:
        pvc = params.extra.get("csi.storage.k8s.io/pvc/name", "")
        namespace = params.extra.get("csi.storage.k8s.io/pvc/namespace", "")
        from_pvc = names.resource_name_from_pvc(namespace, pvc)
        if from_pvc:
            return from_pvc
    return names.resource_name_for(name)


class VolumeCreation:
    """Create (idempotent by name) for the volume service; restore and clone go to the copies."""

    def __init__(
        self,
        client: LinstorClient,
        config: Config,
        groups: ResourceGroups,
        locks: KeyedLocks,
        reads: VolumeReads,
        copies: VolumeCopies,
        settling: VolumeSettling,
    ) -> None:
        self.client = client
        self.config = config
        self.groups = groups
        self.locks = locks
        self.reads = reads
        self.copies = copies
        self.settling = settling

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
        size_kib = sizes.create_kib(name, size_bytes, params.fs_type)
        volume_id = volume_id_for(name, params)
        if source is not None:
            kind, _, ref = source.partition(":")
            if kind not in ("snapshot", "volume") or not ref:
                raise InvalidArgument(f"content source {source!r} must be 'snapshot:<id>' or 'volume:<id>'")
        with self.locks.lock(volume_id):
            group = resource_group_name(params)
            # Multi-step creates always look first. A plain create looks first only while its
            # group is new to this process, so that a repeated request with other parameters
            # is refused without leaving a new resource group behind; afterwards it is one spawn.
            existing = self.reads.read_rd(volume_id) if source or not self.groups.is_known(group) else None
            wanted = wanted_for(
                volume_id,
                name,
                size_kib,
                params,
                source,
                group=group,
                remote_access=policy_text(params.allow_remote_volume_access, params.remote_access_from_same),
            )
            if existing is not None and source is not None:
                resumed = self.copies.resume_clone(existing, wanted, params)
                if resumed is not None:
                    return resumed
            if existing is not None:
                existing = self._settle_existing(existing)
            if existing is not None:
                if source is None and self.settling.is_ours(existing, wanted):
                    return self.settling.converge(wanted, self._compare_existing, size_bytes == 0)
                return self._compare_existing(existing, wanted, size_bytes == 0)
            self.client.features.require(features.SPAWN_PROPS)  # before the group is made
            self.groups.ensure(params, group)
            nodes = self._candidate_nodes(params, topology)
            if source is None:
                return self._spawn(wanted, params, nodes)
            kind, _, ref = source.partition(":")
            if kind == "snapshot":
                return self.copies.create_from_snapshot(wanted, params, ref, nodes, size_bytes == 0)
            return self.copies.create_from_volume(wanted, params, ref, nodes, size_bytes == 0)

    def _settle_existing(self, rd: ResourceDefinition) -> ResourceDefinition | None:
        """An RD half-made by an interrupted restore or clone is removed so the create starts clean."""
        if rd.props.get(rec.CREATING) == rd.name and "CLONING" not in rd.flags:
            log_fields(log, logging.WARNING, "removing half-made volume", volume=rd.name)
            self.client.delete_resource_definition(rd.name)
            return None
        return rd

    def _compare_existing(self, rd: ResourceDefinition, wanted: rec.Wanted, any_size: bool) -> Volume:
        if rd.flags & {"CLONING", "DELETE"}:
            state = "cloned" if "CLONING" in rd.flags else "deleted"
            raise Busy(
                f"volume {wanted.volume_id} is still being {state}; retry later", volume=wanted.volume_id
            )
        volume = rec.volume_from(rd)
        props = rd.props
        if volume is None:
            raise AlreadyExists(
                f"LINSTOR resource {wanted.volume_id} exists but holds no volume (only snapshots?); "
                "choose another name",
                volume=wanted.volume_id,
            )
        ours = props.get(rec.VOLUME_ID) == rd.name
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
        return self.reads.with_replicas(rd)

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
            return self.settling.converge(wanted, self._compare_existing)
        except Unavailable:
            # The spawn may have reached LINSTOR: if it did, the volume is there now.
            rd = self.reads.read_rd_quietly(wanted.volume_id)
            if rd is None:
                raise
            return self.settling.converge(wanted, self._compare_existing)
        except VolumeError as exc:
            # LINSTOR commits the definition before its satellites deploy it: a deployment that
            # failed leaves a half-made volume, which is never reported as created.
            self.settling.drop_half_made(wanted, exc)
            raise
        try:
            if rest_after:
                self.client.autoplace(wanted.volume_id, diskless_on_remaining=params.diskless_on_remaining)
            for node in params.client_nodes:
                self.client.create_resource(
                    wanted.volume_id, node, diskless=True, storage_pool=params.diskless_storage_pool
                )
        except VolumeError:
            self.reads.remove_quietly(wanted.volume_id)
            raise
        rd = ResourceDefinition(
            name=wanted.volume_id,
            resource_group=wanted.resource_group,
            props=props,
            volume_definitions=(VolumeDefinition(number=0, size_kib=wanted.size_kib),),
        )

        def with_replicas() -> Volume:
            built = rec.volume_from(rd, self.client.view_resources([wanted.volume_id]))
            assert built is not None  # rd has volume 0
            return built

        return self.reads.read_back(wanted, with_replicas)

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
            self.groups.ensure(params, wanted.resource_group)
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

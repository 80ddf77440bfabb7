"""Snapshots as objects: name rules, lookup, taking one, and restoring one into resources.

A snapshot is taken by its endpoint, by a multi-snapshot and before a backup is shipped
(to S3 or to another LINSTOR); a restore runs from its endpoint and after a backup
download. Those rules live here once, so no endpoint module imports another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulator import backups, body, disk_states, names, ops, props, tiebreaker
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator

SNAP = rc.MASK_SNAPSHOT
RSC_ = rc.MASK_RSC
CRT = rc.MASK_CRT


def checked_snap_name(name: str, op: int = 0, obj: int = 0) -> str:
    problem = names.snapshot_name_problem(name)
    if problem:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_SNAPSHOT_NAME, f"Invalid snapshot name: {problem}", op, obj)
        )
    return name


def find_snap(rd: st.ResourceDefinition, name: str, op: int = 0, obj: int = 0) -> st.Snapshot:
    checked_snap_name(name, op, obj)
    snap = rd.snapshots.get(names.key(name))
    if snap is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_SNAPSHOT_DFN,
                f"Snapshot definition '{name}' of resource '{rd.name}' not found.",
                op,
                obj,
                obj_refs={"RscDfn": rd.name, "SnapshotName": name},
            )
        )
    return snap


def create_snapshot(emu: Emulator, rd: st.ResourceDefinition, spec: dict[str, Any]) -> list[rc.Entry]:
    """Freeze every volume (one file per volume: replicas share data) on the diskful nodes."""
    name = checked_snap_name(spec.get("name") or "", CRT, SNAP)
    refs = {"RscDfn": rd.name, "SnapshotName": name}
    if names.key(name) in rd.snapshots:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_SNAPSHOT_DFN,
                f"A snapshot definition with the name '{name}' already exists in resource definition "
                f"'{rd.name}'.",
                CRT,
                SNAP,
                obj_refs=refs,
            )
        )
    snap_props = dict(spec.get("snapshot_definition_props") or spec.get("props") or {})
    props.validate_props(snap_props, CRT, SNAP)
    emu.disks.require_up_to_date(
        emu.state.nodes, rd, disk_states.FAIL_SNAPSHOT_NOT_UPTODATE, "Taking a snapshot", CRT, SNAP
    )
    diskful = [r for _, r in sorted(rd.resources.items()) if not r.diskless and "DELETE" not in r.flags]
    wanted = spec.get("nodes") or []
    if wanted:
        chosen = []
        for n in wanted:
            node = emu.node(n, CRT, SNAP)
            rsc = rd.resources.get(names.key(node.name))
            if rsc is None:
                raise rc.ApiFailure(
                    rc.error(
                        rc.FAIL_NOT_FOUND_RSC, f"Resource '{rd.name}' on node '{n}' not found.", CRT, SNAP
                    )
                )
            if rsc.diskless:
                raise rc.ApiFailure(
                    rc.error(
                        rc.FAIL_SNAPSHOTS_NOT_SUPPORTED,
                        f"Cannot snapshot the diskless resource '{rd.name}' on node '{n}'.",
                        CRT,
                        SNAP,
                    )
                )
            chosen.append(rsc)
        diskful = chosen
    # As the controller (CtrlSnapshotCrtApiCallHandler): offline diskful nodes are skipped with a
    # warning; when no diskful node is left to snapshot, there are "no resources" to snapshot.
    skipped = [r for r in diskful if not ops.node_online(emu, r.node)]
    diskful = [r for r in diskful if ops.node_online(emu, r.node)]
    if not diskful:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_NOT_FOUND_RSC, "No resources found for snapshotting", CRT, SNAP, obj_refs=refs)
        )
    warnings = [
        rc.warn(
            0,
            f"Snapshot for resource '{rd.name}' will not be created on node '{r.node}' because that node is "
            "currently offline.",
            CRT,
            SNAP,
        )
        for r in skipped
    ]
    first = diskful[0]
    pool_name = first.props.get("StorPoolName", emu.config.pool_name)
    snap = st.Snapshot(
        name=name,
        nodes=[r.node for r in diskful],
        props=snap_props,
        rd_props=dict(rd.props),
        flags=["SUCCESSFUL"],
        pools={names.key(r.node): r.props.get("StorPoolName", pool_name) for r in diskful},
        node_uuids={names.key(r.node): st.new_uuid() for r in diskful},
    )
    made: list[Path] = []
    try:
        for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number):
            sv = st.SnapshotVolume(number=vd.number, size_kib=vd.size_kib, props=dict(vd.props))
            if vd.backing:
                dest = emu.storage.snapshot_path(first.node, pool_name, rd.name, vd.number, name)
                made.append(dest)
                emu.host(emu.storage.snapshot, Path(vd.backing), dest)
                sv.file = str(dest)
                sv.allocated_kib = emu.storage.allocated_kib(dest)
            snap.volumes[str(vd.number)] = sv
    except Exception as exc:
        for f in made:
            f.unlink(missing_ok=True)
        if isinstance(exc, rc.ApiFailure):
            raise
        code_exc = ops.storage_failure(f"Snapshot '{name}' of '{rd.name}'", exc, CRT, SNAP)
        if "reflink" in str(exc):
            code_exc.entries[0].code = rc.FAIL_SNAPSHOTS_NOT_SUPPORTED
        raise code_exc from exc
    rd.snapshots[names.key(name)] = snap
    return [
        *warnings,
        rc.success(
            rc.CREATED,
            f"New snapshot '{name}' of resource '{rd.name}' registered.",
            CRT,
            SNAP,
            details=f"Snapshot '{name}' of resource '{rd.name}' UUID is: {snap.uuid}",
            obj_refs=refs,
        ),
        rc.success(
            rc.CREATED, f"Suspended IO of '[{rd.name}]' on '{', '.join(snap.nodes)}' for snapshot", CRT, SNAP
        ),
        rc.success(rc.CREATED, f"Took snapshot of '[{rd.name}]' on '{', '.join(snap.nodes)}'", CRT, SNAP),
        rc.success(
            rc.CREATED, f"Resumed IO of '[{rd.name}]' on '{', '.join(snap.nodes)}' after snapshot", CRT, SNAP
        ),
    ]


def target_rd(emu: Emulator, name: str | None, op: int, obj: int) -> st.ResourceDefinition:
    if not name:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_RSC_NAME, "The target resource (to_resource) is missing.", op, obj)
        )
    return emu.rd(name, op, obj)


def restore_resource(emu: Emulator, rd_name: str, snap_name: str, data: dict[str, Any]) -> list[rc.Entry]:
    """Resources of ``data["to_resource"]`` on the snapshot's nodes, from the snapshot's files.

    Shared by the restore endpoint and a finished backup download, which deploys what it
    restored the way the restore endpoint would.
    """
    rd = emu.rd(rd_name, CRT, RSC_)
    snap = find_snap(rd, snap_name, CRT, RSC_)
    target = target_rd(emu, data.get("to_resource"), CRT, RSC_)
    if target.resources:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_RSC,
                f"Resource definition '{target.name}' already has resources; restore needs an empty target.",
                CRT,
                RSC_,
                obj_refs={"RscDfn": target.name},
            )
        )
    if "SUCCESSFUL" not in snap.flags:
        raise rc.ApiFailure(rc.error(rc.FAIL_UNKNOWN_ERROR, "Unable to use failed snapshot", CRT, RSC_))
    if not target.volume_definitions:
        return [rc.warn(0, "No volumes to restore.", CRT, RSC_, obj_refs={"RscDfn": target.name})]
    for vd in target.volume_definitions.values():
        sv = snap.volumes.get(str(vd.number))
        if sv is None:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_NOT_FOUND_SNAPSHOT_VLM_DFN,
                    f"Snapshot volume definition {vd.number} of '{snap.name}' not found.",
                    CRT,
                    RSC_,
                )
            )
        if sv.size_kib != vd.size_kib:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_INVLD_VLM_SIZE,
                    f"Volume definition {vd.number} of '{target.name}' has {vd.size_kib} KiB, the snapshot "
                    f"{sv.size_kib} KiB; sizes must match for a restore.",
                    CRT,
                    RSC_,
                )
            )
    snap_nodes = {names.key(n): n for n in snap.nodes}
    wanted = data.get("nodes") or list(snap.nodes)
    nodes: list[st.Node] = []
    for n in wanted:
        node = emu.node(n, CRT, RSC_)
        if names.key(node.name) not in snap_nodes:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_NOT_FOUND_SNAPSHOT,
                    f"Snapshot '{snap.name}' of '{rd.name}' not found on node '{node.name}'.",
                    CRT,
                    RSC_,
                )
            )
        nodes.append(node)
    rename = data.get("stor_pool_rename") or {}
    stack, entries = emu.layer_stack(target, None, CRT, RSC_)
    sources = {sv.number: Path(sv.file) for sv in snap.volumes.values() if sv.file}
    deployed: list[str] = []
    try:
        for node in nodes:
            pool = snap.pools.get(names.key(node.name), emu.config.pool_name)
            pool = rename.get(pool, pool)
            entries.extend(
                ops.deploy(
                    emu,
                    target,
                    node,
                    pool_name=pool,
                    stack=stack,
                    sources=sources,
                    extra_flags=("RESTORE_FROM_SNAPSHOT",),
                    op=CRT,
                    obj=RSC_,
                )
            )
            deployed.append(names.key(node.name))
    except rc.ApiFailure:
        for nk in deployed:
            ops.remove_resource(emu, target, nk)
        raise
    for k, v in snap.rd_props.items():
        target.props.setdefault(k, v)
    return entries + tiebreaker.manage(emu, target)


def deploy_restored(emu: Emulator, rd_key: str, snap_key: str) -> None:
    """After a backup download: the resource on the restore's node, from the downloaded snapshot."""

    def deploy(rd: st.ResourceDefinition | None) -> None:
        snap = backups.snapshot_of(rd, snap_key)
        if rd is None or snap is None or rd.resources:
            return
        data = body.check({"to_resource": rd.name, "nodes": list(snap.nodes)}, body.SNAPSHOT_RESTORE)
        try:
            restore_resource(emu, rd.name, snap.name, data)
        except rc.ApiFailure as exc:
            backups.log.warning("restored snapshot %s/%s could not be deployed: %s", rd.name, snap.name, exc)

    backups.mutate(emu, rd_key, deploy)

"""Deploying and removing resources: the steps several endpoints share.

Resource create, autoplace, spawn, make-available, restore and clone all end in
"put this resource on that node"; RD, VD and resource deletes all end in "take it away".
Each step does its host work before the answer is sent (all LINSTOR mutations but
clone are synchronous) and undoes what it did when a later step fails, so a failed
request leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from pathlib import Path
from typing import Any

from emulator import names, placement, tiebreaker
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import DEFAULT_POOL, DISKLESS_POOL
from emulator.core import Emulator

log = logging.getLogger("emulator")

CRT_RSC = (rc.MASK_CRT, rc.MASK_RSC)
DEL_RSC = (rc.MASK_DEL, rc.MASK_RSC)


def storage_failure(what: str, exc: Exception, op: int = 0, obj: int = 0) -> rc.ApiFailure:
    """A host-side failure as the controller reports a satellite error."""
    return rc.ApiFailure(
        rc.error(
            rc.FAIL_UNKNOWN_ERROR,
            f"{what} failed on the (emulated) satellite.",
            op,
            obj,
            cause=str(exc) or type(exc).__name__,
            error_report_ids=[rc.new_error_report_id()],
        )
    )


def node_online(emu: Emulator, node_name: str) -> bool:
    node = emu.state.nodes.get(names.key(node_name))
    return node is not None and node.online


def next_node_id(rd: st.ResourceDefinition) -> int:
    used = {r.node_id for r in rd.resources.values()}
    n = 0
    while n in used:
        n += 1
    return n


def resolve_pool_name(
    emu: Emulator, rd: st.ResourceDefinition, node: st.Node, rsc_props: dict[str, str]
) -> str:
    """``StorPoolName`` lookup: resource, VD, RD, RG, node, a diskful peer, then DfltStorPool."""
    if "StorPoolName" in rsc_props:
        return rsc_props["StorPoolName"]
    for vd in rd.volume_definitions.values():
        if "StorPoolName" in vd.props:
            return vd.props["StorPoolName"]
    if "StorPoolName" in rd.props:
        return rd.props["StorPoolName"]
    rg = emu.rg_of(rd)
    if rg is not None and "StorPoolName" in rg.props:
        return rg.props["StorPoolName"]
    if "StorPoolName" in node.props:
        return node.props["StorPoolName"]
    for peer in rd.resources.values():
        if not peer.diskless and "StorPoolName" in peer.props:
            return peer.props["StorPoolName"]
    return DEFAULT_POOL


def required_kib(rd: st.ResourceDefinition) -> int:
    return sum(vd.size_kib for vd in rd.volume_definitions.values())


def check_space(emu: Emulator, rd: st.ResourceDefinition, pool: st.Pool, op: int, obj: int) -> None:
    """Manual create/restore: 206 when the pool's estimate cannot hold the volumes."""
    cap = emu.capacity(pool)
    if cap is None or pool.kind == "DISKLESS":
        return
    cand = placement.Candidate(
        node=pool.node,
        pool=pool.name,
        provider=pool.kind,
        total_kib=cap[0],
        free_kib=cap[1],
        reserved_kib=emu.reserved_kib(names.key(pool.node), names.key(pool.name)),
        thin=pool.kind.endswith("_THIN"),
    )
    est = cand.estimated_free_kib()
    for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number):
        if est is not None and est < vd.size_kib:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_INVLD_VLM_SIZE,
                    f"Not enough free space available for volume {vd.number} of resource '{rd.name}' "
                    f"on node '{pool.node}' in storage pool '{pool.name}'.",
                    op,
                    obj,
                    details=f"Required: {vd.size_kib} KiB, estimated free: {int(est)} KiB",
                )
            )


def deploy(
    emu: Emulator,
    rd: st.ResourceDefinition,
    node: st.Node,
    *,
    pool_name: str | None = None,
    diskless: bool = False,
    stack: list[str],
    props: dict[str, str] | None = None,
    extra_flags: tuple[str, ...] = (),
    sources: dict[int, Path] | None = None,
    check_capacity: bool = True,
    op: int = rc.MASK_CRT,
    obj: int = rc.MASK_RSC,
) -> list[rc.Entry]:
    """Create the resource on ``node`` with its volumes, devices and first filesystem.

    ``sources`` maps volume numbers to files whose data the new volumes start from
    (restore, clone); such volumes are never formatted.
    """
    props = dict(props or {})
    entries: list[rc.Entry] = []
    if diskless:
        pool = emu.pool(node, props.get("StorPoolName", DISKLESS_POOL), op, obj)
        flags = ["DISKLESS", "DRBD_DISKLESS"]
    else:
        wanted = pool_name or resolve_pool_name(emu, rd, node, props)
        code = rc.FAIL_NOT_FOUND_DFLT_STOR_POOL if names.key(wanted) == names.key(DEFAULT_POOL) else 0
        pool = emu.pool(node, wanted, op, obj, code)
        if pool.kind == "DISKLESS":
            diskless = True
            flags = ["DISKLESS", "DRBD_DISKLESS"]
            if "DRBD" not in stack:
                raise rc.ApiFailure(
                    rc.error(rc.FAIL_INVLD_LAYER_STACK, "A diskless resource needs the DRBD layer.", op, obj)
                )
        else:
            flags = []
            if check_capacity:
                check_space(emu, rd, pool, op, obj)
    props["StorPoolName"] = pool.name
    flags.extend(f for f in extra_flags if f not in flags)
    rsc = st.Resource(
        node=node.name,
        props=props,
        flags=flags,
        node_id=next_node_id(rd),
        tcp_port=emu.next_port(names.key(node.name)) if "DRBD" in stack else 7000,
    )
    if emu.disks.take_fault(node.name):
        return _failed_deploy(emu, rd, node, rsc, pool, stack, op, obj)
    created: list[st.VolumeDefinition] = []
    formatted_candidates: list[st.VolumeDefinition] = []
    copies: list[tuple[st.VolumeDefinition, Path]] = []
    # Registered before any host work, so requests running meanwhile see the resource (its
    # port, its share of the pool) while this one runs its commands without the state lock.
    rd.resources[names.key(node.name)] = rsc
    try:
        for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number):
            rsc.volumes[str(vd.number)] = st.Volume(number=vd.number, pool=pool.name)
            if diskless or vd.backing:
                continue
            src = (sources or {}).get(vd.number)
            if src is not None:
                vd.backing = str(emu.storage.volume_path(node.name, pool.name, rd.name, vd.number))
                copies.append((vd, src))
            else:
                vd.backing = str(
                    emu.storage.create_volume(node.name, pool.name, rd.name, vd.number, vd.size_kib)
                )
                formatted_candidates.append(vd)
            created.append(vd)
        if not rd.layer_stack:
            rd.layer_stack = list(stack)
        for vd, src in copies:
            emu.host(_copy_into, emu, src, Path(vd.backing or ""), vd.size_kib)
        emu.sync_devices(rd)
        for vd in formatted_candidates:
            _mkfs_if_wanted(emu, rd, vd, node.name, props)
    except rc.ApiFailure:
        _undo_deploy(emu, rd, node, created)
        raise
    except Exception as exc:
        _undo_deploy(emu, rd, node, created)
        raise storage_failure(f"Creating resource '{rd.name}' on node '{node.name}'", exc, op, obj) from exc
    if not diskless:
        emu.disks.created(rd.name, node.name, pool.kind)
    ctx = {"RscDfn": rd.name, "Node": node.name}
    entries.append(
        rc.success(rc.CREATED, "Successfully set property key(s): StorPoolName", op, obj, obj_refs=ctx)
    )
    entries.append(_registered(rd, node, rsc, op, obj))
    for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number):
        entries.append(
            rc.success(
                rc.CREATED,
                f"Volume with number '{vd.number}' on resource '{rd.name}' on node '{node.name}' "
                "successfully registered",
                rc.MASK_CRT,
                rc.MASK_VLM,
                obj_refs={**ctx, "VlmNr": str(vd.number)},
            )
        )
    if node.online:
        entries.append(
            rc.success(rc.CREATED, f"Created resource '{rd.name}' on '{node.name}'", op, obj, obj_refs=ctx)
        )
        entries.append(
            rc.success(rc.CREATED, f"Resource '{rd.name}' on '{node.name}' ready", op, obj, obj_refs=ctx)
        )
    else:
        entries.append(not_connected(node.name, op, obj))
    return entries


def _registered(rd: st.ResourceDefinition, node: st.Node, rsc: st.Resource, op: int, obj: int) -> rc.Entry:
    """The controller's "registered" entry: the resource is committed, whatever the satellite does next."""
    return rc.success(
        rc.CREATED,
        f"New resource '{rd.name}' on node '{node.name}' registered.",
        op,
        obj,
        details=f"Resource '{rd.name}' on node '{node.name}' UUID is: {rsc.uuid}",
        obj_refs={"RscDfn": rd.name, "Node": node.name},
    )


def _failed_deploy(
    emu: Emulator,
    rd: st.ResourceDefinition,
    node: st.Node,
    rsc: st.Resource,
    pool: st.Pool,
    stack: list[str],
    op: int,
    obj: int,
) -> list[rc.Entry]:
    """An injected satellite failure: the controller has committed the resource, the satellite
    could not deploy it. The resource stays registered (no device, no disk state) and the
    answer carries the satellite's error, so the request answers HTTP 500."""
    rd.resources[names.key(node.name)] = rsc
    for vd in rd.volume_definitions.values():
        rsc.volumes[str(vd.number)] = st.Volume(number=vd.number, pool=pool.name)
    if not rd.layer_stack:
        rd.layer_stack = list(stack)
    emu.disks.failed(rd.name, node.name)
    ctx = {"RscDfn": rd.name, "Node": node.name}
    return [
        _registered(rd, node, rsc, op, obj),
        rc.error(
            rc.FAIL_UNKNOWN_ERROR,
            f"(Node: '{node.name}') Failed to deploy resource '{rd.name}' (injected satellite failure).",
            op,
            obj,
            cause="The satellite reported an error while applying the resource.",
            correction="Check the error report on the satellite, then retry or delete the resource.",
            obj_refs=ctx,
            error_report_ids=[rc.new_error_report_id()],
        ),
    ]


def not_connected(node_name: str, op: int, obj: int) -> rc.Entry:
    return rc.warn(
        rc.WARN_NOT_CONNECTED,
        f"No active connection to satellite '{node_name}'",
        op,
        obj,
        details="The controller is trying to (re-) establish a connection to the satellite. "
        "The controller stored the changes and as soon the satellite is connected, "
        "it will receive this update.",
        obj_refs={"Node": node_name},
    )


def _copy_into(emu: Emulator, src: Path, dest: Path, size_kib: int) -> None:
    """A restored volume starts as a copy of the snapshot, grown to the volume's size."""
    emu.storage.copy_volume(src, dest)
    if dest.stat().st_size < size_kib * 1024:
        emu.storage.resize(dest, size_kib)


def _undo_deploy(
    emu: Emulator, rd: st.ResourceDefinition, node: st.Node, created: list[st.VolumeDefinition]
) -> None:
    rd.resources.pop(names.key(node.name), None)
    for vd in created:
        if vd.backing:
            try:
                emu.detach(vd)
                emu.host(emu.storage.delete, Path(vd.backing), emu.minor_arg(vd))
            except Exception as exc:
                log.error("rollback of %s failed: %s", vd.backing, exc)
            vd.backing = None
    try:
        emu.sync_devices(rd)
    except Exception as exc:
        log.error("device sync after rollback failed: %s", exc)


def _mkfs_if_wanted(
    emu: Emulator,
    rd: st.ResourceDefinition,
    vd: st.VolumeDefinition,
    node_name: str,
    rsc_props: dict[str, str] | None = None,
) -> None:
    """A satellite formats a newly created volume whose FileSystem/Type resolves, if blank.

    Lookup order as the satellite's: resource, VD, volume group, RD, resource group. mkfs runs
    without the state lock and within a time limit that grows with the device; a failure or a
    timeout is the satellite's error, reported with an error report as LINSTOR does.
    """
    own = rsc_props or {}
    fs_type = own.get("FileSystem/Type") or emu.effective_prop(rd, vd, "FileSystem/Type")
    if not fs_type or not vd.backing:
        return
    params = own.get("FileSystem/MkfsParams") or emu.effective_prop(rd, vd, "FileSystem/MkfsParams") or ""
    temporary = vd.backing not in emu.devices
    device = emu.attach(vd) if temporary else emu.devices[vd.backing][0]
    try:
        emu.host(emu.storage.mkfs_if_blank, device, fs_type, params)
    except Exception as exc:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_UNKNOWN_ERROR,
                f"(Node: '{node_name}') Failed to create a {fs_type} filesystem on volume {vd.number} "
                f"of resource '{rd.name}'.",
                cause=str(exc) or type(exc).__name__,
                correction="Check FileSystem/MkfsParams of the volume, its definition and its group.",
                obj_refs={"RscDfn": rd.name, "Node": node_name, "VlmNr": str(vd.number)},
                error_report_ids=[rc.new_error_report_id()],
            )
        ) from exc
    finally:
        if temporary:
            _release_after_mkfs(emu, vd)


def _release_after_mkfs(emu: Emulator, vd: st.VolumeDefinition) -> None:
    """Drop the device mkfs needed; a late opener (a udev probe) only delays that, never fails the create."""
    for attempt in range(20):
        try:
            emu.detach(vd)
            return
        except Exception as exc:
            if attempt == 19:
                log.warning("keeping %s attached after mkfs: %s", vd.backing, exc)
                return
            emu.host(time.sleep, 0.1)


def remove_resource(emu: Emulator, rd: st.ResourceDefinition, rsc_key: str) -> None:
    """Drop a resource; a volume's data goes with its last diskful replica.

    Host work comes first, so a device that cannot be released leaves the resource listed.
    """
    remaining = [r for k, r in rd.resources.items() if k != rsc_key]
    for vd in rd.volume_definitions.values():
        if not vd.backing:
            continue
        if not any(not r.diskless and str(vd.number) in r.volumes for r in remaining):
            backing = vd.backing
            emu.host(emu.storage.delete, Path(backing), emu.minor_arg(vd))
            emu.devices.pop(backing, None)
            vd.backing = None
    rd.resources.pop(rsc_key, None)
    emu.disks.forget(rd.name, rsc_key)
    emu.sync_devices(rd)


def reconnect(emu: Emulator, node: st.Node) -> list[str]:
    """A satellite comes back: it is online again and the deletes stored meanwhile are carried out."""
    node.online = True
    finished = []
    for rd in list(emu.state.resource_definitions.values()):
        rsc = rd.resources.get(names.key(node.name))
        if rsc is not None and "DELETE" in rsc.flags:
            try:
                remove_resource(emu, rd, names.key(node.name))
                finished.append(rd.name)
            except Exception as exc:
                log.error("pending delete of %s on %s failed: %s", rd.name, node.name, exc)
                continue
        if "DELETE" in rd.flags and not rd.resources:
            from emulator.definitions import finish_pending_delete

            try:
                finish_pending_delete(emu, rd)
            except Exception as exc:
                log.error("pending delete of definition %s failed: %s", rd.name, exc)
    return finished


def refuse_in_use(
    emu: Emulator,
    rd: st.ResourceDefinition,
    rsc: st.Resource,
    op: int = 0,
    obj: int = 0,
    obj_refs: dict[str, str] | None = None,
    hint: bool = True,
) -> None:
    """997 (in use) when the satellite reports ``rsc`` open: a mounted resource may not go.

    ``hint`` adds LINSTOR's cause and correction (un-mount it first), which its answer to
    a resource or definition delete carries and its answer to a volume definition delete
    does not; ``obj_refs`` default to the definition and node.
    """
    if not emu.in_use_reported(rd, rsc, fresh=True):
        return
    raise rc.ApiFailure(
        rc.error(
            rc.FAIL_IN_USE,
            f"Resource '{rd.name}' on node '{rsc.node}' is still in use.",
            op,
            obj,
            cause="Resource is mounted/in use." if hint else "",
            correction=f"Un-mount resource '{rd.name}' on the node '{rsc.node}'." if hint else "",
            obj_refs=obj_refs if obj_refs is not None else {"RscDfn": rd.name, "Node": rsc.node},
        )
    )


def check_deletable(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, op: int, obj: int) -> None:
    """997 when the resource is open, or when it is the last disk under diskless peers."""
    refuse_in_use(emu, rd, rsc, op, obj)
    if not rsc.diskless:
        others = [r for r in rd.resources.values() if r is not rsc and "DELETE" not in r.flags]
        if not any(not r.diskless for r in others) and any(r.diskless for r in others):
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_IN_USE,
                    f"Last resource of '{rd.name}' with disk still has diskless resources attached.",
                    op,
                    obj,
                    correction="Delete the diskless resources first.",
                    obj_refs={"RscDfn": rd.name, "Node": rsc.node},
                )
            )


def delete_resource_entries(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource) -> list[rc.Entry]:
    """Delete one resource (checks done by the caller); offline nodes keep it flagged DELETE."""
    ctx = {"RscDfn": rd.name, "Node": rsc.node}
    if not node_online(emu, rsc.node):
        if "DELETE" not in rsc.flags:
            rsc.flags.append("DELETE")
        return [
            rc.success(
                rc.DELETED,
                f"Resource '{rd.name}' on '{rsc.node}' marked for deletion.",
                *DEL_RSC,
                obj_refs=ctx,
            ),
            not_connected(rsc.node, *DEL_RSC),
        ]
    try:
        remove_resource(emu, rd, names.key(rsc.node))
    except Exception as exc:
        raise storage_failure(f"Deleting resource '{rd.name}' on '{rsc.node}'", exc, *DEL_RSC) from exc
    return [
        rc.success(
            rc.DELETED,
            f"Resource '{rd.name}' on '{rsc.node}' preparing for deletion.",
            *DEL_RSC,
            obj_refs=ctx,
        ),
        rc.success(
            rc.DELETED, f"Resource '{rd.name}' on '{rsc.node}' marked for deletion.", *DEL_RSC, obj_refs=ctx
        ),
        rc.success(
            rc.DELETED, f"Resource '{rd.name}' on '{rsc.node}' deletion complete.", *DEL_RSC, obj_refs=ctx
        ),
    ]


# ---------------------------------------------------------------------- autoplace


def candidates(emu: Emulator) -> list[placement.Candidate]:
    on_node = emu.resources_on_nodes()
    reserved = emu.reserved_all()
    out = []
    for nk, node in emu.state.nodes.items():
        eligible = node.props.get("AutoplaceTarget", "true").lower() != "false" and not (
            {"EVICTED", "EVACUATE"} & set(node.flags)
        )
        for pool in emu.pools_of(nk):
            if pool.kind == "DISKLESS":
                continue
            cap = emu.capacity(pool)
            out.append(
                placement.Candidate(
                    node=node.name,
                    pool=pool.name,
                    provider=pool.kind,
                    node_props=node.props,
                    online=node.online,
                    eligible=eligible,
                    resources_on_node=on_node.get(nk, frozenset()),
                    total_kib=cap[0] if cap else None,
                    free_kib=cap[1] if cap else None,
                    reserved_kib=reserved.get((nk, names.key(pool.name)), 0),
                    thin=pool.kind.endswith("_THIN"),
                )
            )
    return out


def effective_filter(
    emu: Emulator,
    rd: st.ResourceDefinition,
    request_filter: dict[str, Any] | None,
    layer_list: list[str] | None = None,
    diskless_on_remaining: bool | None = None,
) -> dict[str, Any]:
    rg = emu.rg_of(rd)
    flt = placement.merge_filters(rg.select_filter if rg else {}, request_filter or {})
    flt.setdefault("place_count", 2)
    if layer_list:
        flt["layer_stack"] = layer_list
    if diskless_on_remaining is not None:
        flt["diskless_on_remaining"] = diskless_on_remaining
    return flt


def autoplace(
    emu: Emulator,
    rd: st.ResourceDefinition,
    flt: dict[str, Any],
    op: int = rc.MASK_CRT,
    obj: int = rc.MASK_RSC,
) -> list[rc.Entry]:
    """Place diskful replicas up to the filter's count; all or nothing."""
    place_count = flt.get("place_count", 2)
    if place_count is None or place_count < 1:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_PLACE_COUNT, f"Invalid place count: {place_count} (minimum is 1)", op, obj)
        )
    stack, entries = emu.layer_stack(rd, flt.get("layer_stack"), op, obj)
    diskful = [r for r in rd.resources.values() if not r.diskless and "DELETE" not in r.flags]
    additional = flt.get("additional_place_count") or 0
    need = additional if additional > 0 else place_count - len(diskful)
    if need <= 0:
        entries.append(
            rc.warn(
                rc.WARN_RSC_ALREADY_DEPLOYED,
                f"Resource '{rd.name}' was already deployed on {len(diskful)} nodes. Skipping.",
                op,
                obj,
                obj_refs={"RscDfn": rd.name},
            )
        )
        if flt.get("diskless_on_remaining"):
            entries.extend(_diskless_on_remaining(emu, rd, stack, op, obj))
        entries.extend(tiebreaker.manage(emu, rd))
        return entries
    existing_props = [
        emu.state.nodes[names.key(r.node)].props for r in diskful if names.key(r.node) in emu.state.nodes
    ]
    # As the controller: a node with a DRBD-diskless resource of this definition (a client or
    # a tie-breaker) may be chosen, and that resource then gets a disk (toggle-disk).
    rd_key = names.key(rd.name)
    toggle = {k for k, r in rd.resources.items() if "DRBD_DISKLESS" in r.flags and "DELETE" not in r.flags}
    pools = [
        dataclasses.replace(c, resources_on_node=c.resources_on_node - {rd_key})
        if names.key(c.node) in toggle
        else c
        for c in candidates(emu)
    ]
    chosen = placement.select(pools, flt, rd_key, required_kib(rd), need, existing_props)
    if chosen is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_ENOUGH_NODES,
                "Not enough available nodes",
                op,
                obj,
                details=_criteria(flt, need, required_kib(rd)),
                obj_refs={"RscDfn": rd.name},
            )
        )
    deployed: list[str] = []
    toggled: list[tuple[str, st.Resource]] = []
    try:
        for c in chosen:
            nk = names.key(c.node)
            node = emu.state.nodes[nk]
            if nk in toggle:
                saved = rd.resources[nk]
                entries.extend(_give_disk(emu, rd, node, c.pool, stack, op, obj))
                toggled.append((nk, saved))
                continue
            entries.extend(
                deploy(emu, rd, node, pool_name=c.pool, stack=stack, check_capacity=False, op=op, obj=obj)
            )
            deployed.append(nk)
    except rc.ApiFailure:
        for nk in deployed:
            remove_resource(emu, rd, nk)
        for nk, saved in toggled:  # the diskless resource as it was; the data stays with the others
            rd.resources[nk] = saved
        if toggled:
            emu.sync_devices(rd)
        raise
    refs = {"RscDfn": rd.name}
    for i, c in enumerate(chosen):
        refs[f"Node/{i}"] = c.node
        refs[f"StoragePool/{i}/0"] = f"{c.pool},{c.provider}"
    entries.insert(
        0,
        rc.success(
            rc.CREATED,
            f"Resource '{rd.name}' successfully autoplaced on {len(chosen)} nodes",
            op,
            obj,
            details="Used nodes (storage pool name): " + ", ".join(f"'{c.node}' ({c.pool})" for c in chosen),
            obj_refs=refs,
        ),
    )
    if flt.get("diskless_on_remaining"):
        entries.extend(_diskless_on_remaining(emu, rd, stack, op, obj))
    entries.extend(tiebreaker.manage(emu, rd))
    return entries


def _give_disk(
    emu: Emulator, rd: st.ResourceDefinition, node: st.Node, pool: str, stack: list[str], op: int, obj: int
) -> list[rc.Entry]:
    """Turn the node's DRBD-diskless resource into a diskful one; it keeps its identity."""
    nk = names.key(node.name)
    saved = rd.resources.pop(nk)
    props = {k: v for k, v in saved.props.items() if k != "StorPoolName"}
    try:
        entries = deploy(
            emu, rd, node, pool_name=pool, stack=stack, props=props, check_capacity=False, op=op, obj=obj
        )
    except rc.ApiFailure:
        rd.resources[nk] = saved
        raise
    new = rd.resources[nk]
    new.uuid, new.create_ts, new.node_id = saved.uuid, saved.create_ts, saved.node_id
    return entries


def _diskless_on_remaining(
    emu: Emulator, rd: st.ResourceDefinition, stack: list[str], op: int, obj: int
) -> list:
    if "DRBD" not in stack:
        return []  # no diskless resources without DRBD (storage-only mode)
    if not any(not r.diskless for r in rd.resources.values()):
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_RSC,
                f"Resource '{rd.name}' has no diskful replica to attach diskless resources to.",
                op,
                obj,
            )
        )
    entries: list[rc.Entry] = []
    for nk, node in sorted(emu.state.nodes.items()):
        if nk in rd.resources or not node.online:
            continue
        entries.extend(deploy(emu, rd, node, diskless=True, stack=stack, extra_flags=(), op=op, obj=obj))
    return entries


def _criteria(flt: dict[str, Any], need: int, size: int) -> str:
    parts = [f"Replica count: {need}", f"Required size: {size} KiB"]
    for key in (
        "node_name_list",
        "storage_pool_list",
        "storage_pool",
        "provider_list",
        "not_place_with_rsc",
        "not_place_with_rsc_regex",
        "replicas_on_same",
        "replicas_on_different",
        "layer_stack",
    ):
        if flt.get(key):
            parts.append(f"{key}: {flt[key]}")
    return "Auto-place configuration details:\n   " + "\n   ".join(parts)


def cluster_id(emu: Emulator) -> str:
    """This emulated cluster's ``Cluster/LocalID`` (made once, kept in the state file)."""
    if not emu.state.cluster_id:
        emu.state.cluster_id = str(uuid.uuid4())
    return emu.state.cluster_id

"""Snapshots, restore into a new resource definition, and clone with status polling."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from emulator import backups, body, disk_states, names, ops, props, views
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.definitions import new_rd, purge_rd
from emulator.listing import modify_props, name_filter
from emulator.ordered import in_key_order
from emulator.routing import Json, Request, paginate
from emulator.snapshots import checked_snap_name, create_snapshot, find_snap, restore_resource, target_rd

log = logging.getLogger("emulator")
SNAP = rc.MASK_SNAPSHOT
CRT = rc.MASK_CRT


def list_snaps(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    out = [views.snapshot(emu, rd, s) for _, s in sorted(rd.snapshots.items())]
    return Json(paginate(out, req))


def get_snap(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    snap = find_snap(rd, req.params["snap"])
    return Json(views.snapshot(emu, rd, snap))


def post_snap(emu: Emulator, req: Request) -> list[rc.Entry]:
    spec = req.body(emu.config.controller.snapshot_spec())
    rd = emu.rd(req.params["rd"], CRT, SNAP)
    return create_snapshot(emu, rd, spec)


def multi_snap(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(emu.config.controller.snapshot_multi_spec())
    specs = data.get("snapshots") or []
    rds = [emu.rd(s.get("resource_name") or "", CRT, SNAP) for s in specs]
    done: list[tuple[st.ResourceDefinition, str]] = []
    entries: list[rc.Entry] = []
    try:
        for rd, spec in zip(rds, specs, strict=True):
            entries.extend(create_snapshot(emu, rd, spec))
            done.append((rd, names.key(spec.get("name") or "")))
    except rc.ApiFailure:
        for rd, key in done:
            _drop_snapshot(emu, rd, key)
        raise
    return entries


def _drop_snapshot(emu: Emulator, rd: st.ResourceDefinition, key: str) -> None:
    snap = rd.snapshots.pop(key, None)
    if snap is None:
        return
    for sv in snap.volumes.values():
        if sv.file:
            Path(sv.file).unlink(missing_ok=True)


def modify_snap(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.SNAPSHOT_MODIFY)
    rd = emu.rd(req.params["rd"], rc.MASK_MOD, SNAP)
    snap = find_snap(rd, req.params["snap"], rc.MASK_MOD, SNAP)
    return modify_props(snap, data, f"Snapshot '{snap.name}' of '{rd.name}'", SNAP, {"RscDfn": rd.name})


def delete_snap(emu: Emulator, req: Request) -> list[rc.Entry]:
    rd_name, snap_name = req.params["rd"], req.params["snap"]
    rc.refuse_invalid(names.resource_name_problem(rd_name), rc.FAIL_INVLD_RSC_NAME)
    checked_snap_name(snap_name)
    rd = emu.state.resource_definitions.get(names.key(rd_name))
    snap = rd.snapshots.get(names.key(snap_name)) if rd else None
    refs = {"RscDfn": rd_name, "SnapshotName": snap_name}
    if rd is None or snap is None:
        return [
            rc.warn(
                rc.WARN_NOT_FOUND, f"Snapshot '{snap_name}' of resource '{rd_name}' not found.", obj_refs=refs
            )
        ]
    if backups.busy(snap):
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_IN_USE,
                f"Snapshot '{snap.name}' of resource '{rd.name}' is being shipped or restored; abort the "
                "shipment first.",
                obj_refs=refs,
            )
        )
    only = {names.key(n) for n in req.q("nodes")}
    if only and only != {names.key(n) for n in snap.nodes}:
        snap.nodes = [n for n in snap.nodes if names.key(n) not in only]
        if snap.nodes:
            return [
                rc.success(
                    rc.DELETED,
                    f"Snapshot '{snap.name}' of '{rd.name}' deleted on the given nodes.",
                    obj_refs=refs,
                )
            ]
    _drop_snapshot(emu, rd, names.key(snap_name))
    return [rc.success(rc.DELETED, f"Snapshot '{snap.name}' of resource '{rd.name}' deleted.", obj_refs=refs)]


def view_snaps(emu: Emulator, req: Request) -> Json:
    nodes = name_filter(req, "nodes", names.node_name_problem, code=rc.FAIL_INVLD_NODE_NAME)
    rds = name_filter(req, "resources", names.resource_name_problem, code=rc.FAIL_INVLD_RSC_NAME)
    out = []
    for rk, rd in in_key_order(emu.state.resource_definitions):
        if rds is not None and rk not in rds:
            continue
        for _, snap in sorted(rd.snapshots.items()):
            if nodes is not None and not {names.key(n) for n in snap.nodes} & nodes:
                continue
            out.append(views.snapshot(emu, rd, snap))
    return Json(paginate(out, req))


# ---------------------------------------------------------------------- restore


def restore_vd(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.SNAPSHOT_RESTORE_VD)
    rd = emu.rd(req.params["rd"], CRT, rc.MASK_VLM_DFN)
    snap = find_snap(rd, req.params["snap"], CRT, rc.MASK_VLM_DFN)
    target = target_rd(emu, data.get("to_resource"), CRT, rc.MASK_VLM_DFN)
    for sv in snap.volumes.values():
        if str(sv.number) in target.volume_definitions:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_EXISTS_VLM_DFN,
                    f"A volume definition with the number {sv.number} already exists in resource definition "
                    f"'{target.name}'.",
                    CRT,
                    rc.MASK_VLM_DFN,
                    obj_refs={"RscDfn": target.name, "VlmNr": str(sv.number)},
                )
            )
    entries = []
    for sv in sorted(snap.volumes.values(), key=lambda v: v.number):
        vd = st.VolumeDefinition(
            number=sv.number, size_kib=sv.size_kib, props=dict(sv.props), minor=emu.next_minor()
        )
        target.volume_definitions[str(sv.number)] = vd
        entries.append(
            rc.success(
                rc.DELETED,
                f"Volume definition with number '{sv.number}' of resource definition '{target.name}' "
                "restored from "
                f"resource '{rd.name}', snapshot '{snap.name}'.",
                obj_refs={"RscDfn": target.name, "VlmNr": str(sv.number)},
            )
        )
    return entries


def restore_rsc(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.SNAPSHOT_RESTORE)
    return restore_resource(emu, req.params["rd"], req.params["snap"], data)


# ---------------------------------------------------------------------- clone


def _clone_reply(
    src: str, dst: str, entries: list[rc.Entry], op: int, obj: int, ok_status: int = 201
) -> Json:
    entries = [e.with_context(op, obj) for e in entries]
    status = rc.http_status(entries, ok_status)
    return Json(
        {
            "location": f"/v1/resource-definitions/{src}/clone/{dst}",
            "source_name": src,
            "clone_name": dst,
            "messages": [e.to_json() for e in entries],
        },
        status,
    )


def clone(emu: Emulator, req: Request) -> Json:
    if emu.config.controller.clone_fields_unknown(req.json()):
        # Before 1.32.0 the clone handler let Jackson's unknown-field error escape: a bare 500.
        return Json("", 500)
    data = req.body(emu.config.controller.clone_spec())
    src_name = req.params["rd"]
    dst_name = data.get("name") or ""
    try:
        return _clone_reply(src_name, dst_name, _start_clone(emu, src_name, data), CRT, rc.MASK_RSC_DFN)
    except rc.ApiFailure as failure:
        return _clone_reply(src_name, dst_name, failure.entries, CRT, rc.MASK_RSC_DFN)


def _start_clone(emu: Emulator, src_name: str, data: dict[str, Any]) -> list[rc.Entry]:
    src = emu.rd(src_name, CRT, rc.MASK_RSC_DFN)
    if emu.config.strict_clone:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_PROVIDER,
                "Clone source contains unsupported storage pools",
                details="FILE_THIN storage pools do not support cloning.",
                obj_refs={"RscDfn": src.name},
            )
        )
    if "CLONING" in src.flags:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_NOT_ALL_UPTODATE, f"Resource definition '{src.name}' is still being cloned.")
        )
    emu.disks.require_up_to_date(
        emu.state.nodes, src, disk_states.FAIL_NOT_ALL_UPTODATE, "Cloning", CRT, rc.MASK_RSC_DFN
    )
    override = data.get("override_props") or {}
    props.validate_props(override, CRT, rc.MASK_RSC_DFN)
    rd_props = props.apply_modify(
        dict(src.props), override, data.get("delete_props") or [], data.get("delete_namespaces") or []
    )
    rd_props["cloned-from"] = src.name
    rg_name = data.get("resource_group") or src.resource_group
    layer = [s.upper() for s in data.get("layer_list") or []] or list(src.layer_stack)
    dst, entries = new_rd(
        emu,
        data.get("name") or "",
        external_name=data.get("external_name") or "",
        rd_props=rd_props,
        rg_name=rg_name,
        layer_stack=layer,
    )
    sizes = data.get("volume_sizes") or []
    emu.state.resource_definitions[names.key(dst.name)] = dst
    dst.flags.append("CLONING")
    dst.clone_status = "CLONING"
    copies: list[tuple[st.VolumeDefinition, Path, Path]] = []
    try:
        for vd in sorted(src.volume_definitions.values(), key=lambda v: v.number):
            size = sizes[vd.number] if vd.number < len(sizes) and sizes[vd.number] else vd.size_kib
            if size < vd.size_kib:
                raise rc.ApiFailure(
                    rc.error(rc.FAIL_INVLD_VLM_SIZE, "A clone cannot be smaller than its source.")
                )
            dst.volume_definitions[str(vd.number)] = st.VolumeDefinition(
                number=vd.number, size_kib=size, props=dict(vd.props), minor=emu.next_minor()
            )
        for _, rsc in sorted(src.resources.items()):
            if "DELETE" in rsc.flags:
                continue
            dst_rsc = st.Resource(
                node=rsc.node,
                props=dict(rsc.props),
                flags=[f for f in rsc.flags if f != "RESTORE_FROM_SNAPSHOT"],
                node_id=rsc.node_id,
                tcp_port=emu.next_port(names.key(rsc.node)),
            )
            for key_, vol in rsc.volumes.items():
                dst_rsc.volumes[key_] = st.Volume(number=vol.number, pool=vol.pool)
            dst.resources[names.key(rsc.node)] = dst_rsc
        first = next((r for _, r in sorted(dst.resources.items()) if not r.diskless), None)
        for vd in dst.volume_definitions.values():
            svd = src.volume_definitions[str(vd.number)]
            if first is not None and svd.backing:
                vol = first.volumes.get(str(vd.number))
                pool = vol.pool if vol else emu.config.pool_name
                dest = emu.storage.volume_path(first.node, pool, dst.name, vd.number)
                copies.append((vd, Path(svd.backing), dest))
        if not dst.layer_stack and dst.resources:
            dst.layer_stack = list(src.layer_stack)
    except rc.ApiFailure:
        purge_rd(emu, dst)
        raise
    except Exception as exc:
        purge_rd(emu, dst)
        raise ops.storage_failure(f"Cloning '{src.name}'", exc) from exc
    thread = threading.Thread(
        target=_copy_clone, args=(emu, dst.name, copies), name=f"clone-{dst.name}", daemon=True
    )
    thread.start()
    entries.append(
        rc.success(
            rc.CREATED,
            f"Cloning of resource definition '{src.name}' into '{dst.name}' started.",
            obj_refs={"RscDfn": dst.name, "ClonedFrom": src.name},
        )
    )
    return entries


def _copy_clone(emu: Emulator, dst_name: str, copies: list[tuple[st.VolumeDefinition, Path, Path]]) -> None:
    """Background data copy: the RD stays CLONING until every volume is whole and attached."""
    done: list[tuple[st.VolumeDefinition, Path]] = []
    failed = ""
    if emu.clone_delay > 0:
        time.sleep(emu.clone_delay)  # a long copy, for tests of clients that wait for it
    for vd, src, dest in copies:
        try:
            emu.storage.copy_volume(src, dest)
            if dest.stat().st_size < vd.size_kib * 1024:
                emu.storage.resize(dest, vd.size_kib)
            done.append((vd, dest))
        except Exception as exc:
            failed = str(exc)
            log.error("clone copy into %s failed: %s", dest, exc)
            break
    with emu.lock:
        emu.reservations.acquire({names.key(dst_name)}, emu.state.resource_definitions.keys)
        try:
            _finish_clone(emu, dst_name, done, failed)
        finally:
            emu.reservations.release()
        emu.persist({names.key(dst_name)})


def _finish_clone(
    emu: Emulator, dst_name: str, done: list[tuple[st.VolumeDefinition, Path]], failed: str
) -> None:
    """Record the copy's outcome, with the clone reserved like any request changing it."""
    rd = emu.state.resource_definitions.get(names.key(dst_name))
    if rd is None:
        for _, dest in done:
            dest.unlink(missing_ok=True)
        return
    if rd.flags.count("CLONING"):
        rd.flags.remove("CLONING")
    if failed:
        rd.flags.append("FAILED")
        rd.clone_status = "FAILED"
        for _, dest in done:
            dest.unlink(missing_ok=True)
    else:
        for vd, dest in done:
            vd.backing = str(dest)
        try:
            emu.sync_devices(rd)
            rd.clone_status = "COMPLETE"
        except Exception as exc:
            log.error("clone %s: attaching devices failed: %s", dst_name, exc)
            rd.flags.append("FAILED")
            rd.clone_status = "FAILED"


def clone_status(emu: Emulator, req: Request) -> Json:
    emu.rd(req.params["rd"])
    dst = emu.rd(req.params["clone"])
    if "FAILED" in dst.flags:
        status = "FAILED"
    elif "CLONING" in dst.flags:
        status = "CLONING"
    elif any(not ops.node_online(emu, r.node) for r in dst.resources.values()):
        status = "FAILED"
    else:
        status = "COMPLETE"
    return Json({"status": status})

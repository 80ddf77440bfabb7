"""Resource definitions and volume definitions (create, modify, resize, delete)."""

from __future__ import annotations

from pathlib import Path

from emulator import body, disk_states, names, ops, props, tiebreaker, views
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.definitions import check_size, find_vd, new_rd, new_vd, purge_rd, vd_number
from emulator.listing import listed, modify_props, name_filter
from emulator.routing import Json, Request

RD = rc.MASK_RSC_DFN
VD = rc.MASK_VLM_DFN


def list_rds(emu: Emulator, req: Request) -> Json:
    wanted = name_filter(
        req, "resource_definitions", names.resource_name_problem, code=rc.FAIL_INVLD_RSC_NAME
    )
    with_vds = req.q_bool("with_volume_definitions")
    items = listed(req, emu.state.resource_definitions, wanted)
    return Json([views.resource_definition(emu, rd, with_vds) for rd in items])


def get_rd(emu: Emulator, req: Request) -> Json:
    return Json(views.resource_definition(emu, emu.rd(req.params["rd"])))


def create_rd(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RD_CREATE)
    spec = data.get("resource_definition") or {}
    stack = [str(ld.get("type", "")).upper() for ld in spec.get("layer_data") or [] if ld]
    entries: list[rc.Entry] = []
    if stack:
        if stack[-1] != "STORAGE":
            stack.append("STORAGE")
            entries.append(
                rc.warn(0, "Layer stack did not end with STORAGE; STORAGE appended.", rc.MASK_CRT, RD)
            )
        for layer in stack:
            if layer not in ("DRBD", "STORAGE", "LUKS", "NVME", "WRITECACHE", "CACHE", "BCACHE", "OPENFLEX"):
                raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_LAYER_KIND, f"Unknown layer kind '{layer}'"))
    rd, created = new_rd(
        emu,
        spec.get("name") or "",
        external_name=spec.get("external_name") or "",
        rd_props=spec.get("props") or {},
        rg_name=spec.get("resource_group_name"),
        layer_stack=stack,
    )
    if data.get("drbd_peer_slots") is not None:
        rd.peer_slots = data["drbd_peer_slots"]
    if data.get("drbd_secret"):
        rd.secret = data["drbd_secret"]
    if data.get("drbd_port") is not None:
        rd.port = data["drbd_port"]
    emu.state.resource_definitions[names.key(rd.name)] = rd
    return created + entries


def modify_rd(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RD_MODIFY)
    rd = emu.rd(req.params["rd"], rc.MASK_MOD, RD)
    props.validate_props(data.get("override_props") or {}, rc.MASK_MOD, RD)
    if data.get("resource_group"):
        rg = emu.rg(data["resource_group"], rc.MASK_MOD, RD)
        rd.resource_group = rg.name
    if data.get("layer_stack"):
        if rd.resources:
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_INVLD_LAYER_STACK, "The layer stack cannot be changed while resources exist."
                )
            )
        rd.layer_stack, _ = emu.layer_stack(rd, data["layer_stack"], rc.MASK_MOD, RD)
    if data.get("drbd_peer_slots") is not None:
        rd.peer_slots = data["drbd_peer_slots"]
    if data.get("drbd_port") is not None:
        rd.port = data["drbd_port"]
    entries = modify_props(
        rd, data, f"Resource definition '{rd.name}'", RD, {"RscDfn": rd.name, "UUID": rd.uuid}
    )
    touched = {*(data.get("override_props") or {}), *(data.get("delete_props") or [])}
    if touched & {tiebreaker.AUTO_TIEBREAKER_KEY, tiebreaker.QUORUM_KEY}:
        entries.extend(tiebreaker.manage(emu, rd))  # the controller re-checks the tie-breaker then
    return entries


def delete_rd(emu: Emulator, req: Request) -> list[rc.Entry]:
    name = req.params["rd"]
    rc.refuse_invalid(names.resource_name_problem(name), rc.FAIL_INVLD_RSC_NAME)
    rd = emu.state.resource_definitions.get(names.key(name))
    if rd is None:
        return [
            rc.warn(rc.WARN_NOT_FOUND, f"Resource definition '{name}' not found.", obj_refs={"RscDfn": name})
        ]
    if rd.snapshots:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_SNAPSHOT_DFN,
                f"Cannot delete resource definition '{rd.name}' because it has snapshots.",
                details="Snapshots: " + ", ".join(sorted(s.name for s in rd.snapshots.values())),
                correction="Delete the snapshots first.",
                obj_refs={"RscDfn": rd.name},
            )
        )
    for rsc in rd.resources.values():
        ops.refuse_in_use(emu, rd, rsc)
    if "CLONING" in rd.flags:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_IN_USE, f"Resource definition '{rd.name}' is still being cloned.")
        )
    offline = [r for r in rd.resources.values() if not ops.node_online(emu, r.node)]
    if offline:
        return _delete_pending(emu, rd, offline)
    try:
        purge_rd(emu, rd)
    except Exception as exc:
        raise ops.storage_failure(f"Deleting resource definition '{rd.name}'", exc) from exc
    ctx = {"RscDfn": rd.name, "UUID": rd.uuid}
    return [
        rc.success(rc.DELETED, f"Resource definition '{rd.name}' marked for deletion.", obj_refs=ctx),
        rc.success(
            rc.DELETED,
            f"Resource definition '{rd.name}' deleted.",
            details=f"Resource definition '{rd.name}' UUID was: {rd.uuid}",
            obj_refs=ctx,
        ),
    ]


def _delete_pending(emu: Emulator, rd: st.ResourceDefinition, offline: list[st.Resource]) -> list[rc.Entry]:
    """A replica on an offline node: the definition stays, flagged DELETE, until the node is back.

    The connected replicas go now; the rest (and then the definition) when their satellite
    reconnects, as the controller finishes a delete only once every satellite confirmed it.
    """
    ctx = {"RscDfn": rd.name, "UUID": rd.uuid}
    try:
        for key, rsc in list(rd.resources.items()):
            if rsc not in offline:
                ops.remove_resource(emu, rd, key)
    except Exception as exc:
        raise ops.storage_failure(f"Deleting resource definition '{rd.name}'", exc) from exc
    for rsc in offline:
        if "DELETE" not in rsc.flags:
            rsc.flags.append("DELETE")
    if "DELETE" not in rd.flags:
        rd.flags.append("DELETE")
    return [
        rc.success(rc.DELETED, f"Resource definition '{rd.name}' marked for deletion.", obj_refs=ctx),
        *(ops.not_connected(r.node, rc.MASK_DEL, RD) for r in offline),
    ]


def list_vds(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    return Json(
        [
            views.volume_definition(emu, rd, vd)
            for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number)
        ]
    )


def get_vd(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    return Json(views.volume_definition(emu, rd, find_vd(emu, rd, req.params["nr"])))


def create_vd(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.VD_CREATE)
    rd = emu.rd(req.params["rd"], rc.MASK_CRT, VD)
    return new_vd(emu, rd, data.get("volume_definition") or {}, data.get("drbd_minor_number"))


def modify_vd(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.VD_MODIFY)
    rd = emu.rd(req.params["rd"], rc.MASK_MOD, VD)
    vd = find_vd(emu, rd, req.params["nr"], rc.MASK_MOD)
    props.validate_props(data.get("override_props") or {}, rc.MASK_MOD, VD)
    entries: list[rc.Entry] = []
    new_size = data.get("size_kib")
    refs = {"RscDfn": rd.name, "VlmNr": str(vd.number)}
    if new_size is not None:
        new_size = check_size(new_size, rc.MASK_MOD)
        if new_size == vd.size_kib:
            entries.append(
                rc.warn(
                    rc.WARN_VLMDFN_RESIZE_SAME_SIZE,
                    f"Volume definition {vd.number} of '{rd.name}' already has the size {new_size} KiB.",
                    obj_refs=refs,
                )
            )
            new_size = None
        elif new_size < vd.size_kib and views.uses_drbd(emu, rd):
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_INVLD_VLM_SIZE,
                    "Shrinking volumes is not supported by layer 'DRBD'",
                    obj_refs=refs,
                )
            )
    if new_size is not None:
        emu.disks.require_up_to_date(
            emu.state.nodes, rd, disk_states.FAIL_NOT_ALL_UPTODATE, "Resizing", rc.MASK_MOD, VD
        )
        if vd.backing:
            try:
                emu.host(emu.storage.resize, Path(vd.backing), new_size)
            except Exception as exc:
                raise ops.storage_failure(f"Resizing volume {vd.number} of '{rd.name}'", exc) from exc
        old = vd.size_kib
        vd.size_kib = new_size
        entries.append(
            rc.success(
                rc.MODIFIED,
                f"Volume definition with number '{vd.number}' of resource definition '{rd.name}' resized "
                f"from {old} KiB to {new_size} KiB.",
                obj_refs=refs,
            )
        )
    if data.get("flags"):
        for f in data["flags"]:
            if f.startswith("-"):
                if f[1:] in vd.flags:
                    vd.flags.remove(f[1:])
            elif f not in vd.flags:
                vd.flags.append(f)
    entries.extend(modify_props(vd, data, f"Volume definition {vd.number} of '{rd.name}'", VD, refs))
    return entries


def delete_vd(emu: Emulator, req: Request) -> list[rc.Entry]:
    rd_name = req.params["rd"]
    rc.refuse_invalid(names.resource_name_problem(rd_name), rc.FAIL_INVLD_RSC_NAME)
    nr = vd_number(req.params["nr"], rc.MASK_DEL)
    found = emu.state.resource_definitions.get(names.key(rd_name))
    vd = found.volume_definitions.get(str(nr)) if found else None
    refs = {"RscDfn": found.name if found else rd_name, "VlmNr": str(nr)}
    if found is None or vd is None:
        return [
            rc.warn(rc.WARN_NOT_FOUND, f"Volume definition {nr} of '{rd_name}' not found.", obj_refs=refs)
        ]
    rd = found
    for rsc in rd.resources.values():
        ops.refuse_in_use(emu, rd, rsc, obj_refs=refs, hint=False)
    try:
        if vd.backing:
            emu.detach(vd)
            emu.host(emu.storage.delete, Path(vd.backing), emu.minor_arg(vd))
            vd.backing = None
    except Exception as exc:
        raise ops.storage_failure(f"Deleting volume {nr} of '{rd.name}'", exc) from exc
    del rd.volume_definitions[str(nr)]
    for rsc in rd.resources.values():
        rsc.volumes.pop(str(nr), None)
    return [
        rc.success(
            rc.DELETED,
            f"Volume definition with number '{nr}' of resource definition '{rd.name}' deleted.",
            obj_refs=refs,
        )
    ]


def sync_status(emu: Emulator, req: Request) -> Json:
    emu.rd(req.params["rd"])
    return Json({"synced_on_all": True})

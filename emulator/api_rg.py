"""Resource groups, their volume groups, spawn, adjust and query-size-info."""

from __future__ import annotations

from typing import Any

from emulator import body, names, ops, placement, props, views
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.definitions import new_rd, new_vd, purge_rd
from emulator.listing import listed, modify_props, name_filter
from emulator.ordered import in_key_order
from emulator.routing import Json, Request

RG = rc.MASK_RSC_GRP


def list_rgs(emu: Emulator, req: Request) -> Json:
    wanted = name_filter(
        req, "resource_groups", names.resource_group_name_problem, code=rc.FAIL_INVLD_RSC_GRP_NAME
    )
    return Json([views.resource_group(emu, g) for g in listed(req, emu.state.resource_groups, wanted)])


def get_rg(emu: Emulator, req: Request) -> Json:
    return Json(views.resource_group(emu, emu.rg(req.params["rg"])))


def create_rg(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RG_CREATE)
    name = data.get("name") or ""
    rc.refuse_invalid(names.resource_group_name_problem(name), rc.FAIL_INVLD_RSC_GRP_NAME)
    if names.key(name) in emu.state.resource_groups:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_RSC_GRP,
                f"A resource group with the name '{name}' already exists",
                details=f"Resource group: {name}",
                obj_refs={"RscGrp": name},
            )
        )
    props.validate_props(data.get("props") or {}, rc.MASK_CRT, RG)
    flt = placement.check_filter(data.get("select_filter"), rc.MASK_CRT, RG)
    flt.setdefault("place_count", 2)
    rg = st.ResourceGroup(
        name=name,
        description=data.get("description") or "",
        props=dict(data.get("props") or {}),
        select_filter=flt,
        peer_slots=data.get("peer_slots"),
    )
    emu.state.resource_groups[names.key(name)] = rg
    return [
        rc.success(
            rc.CREATED,
            f"New resource group '{name}' created.",
            details=f"Resource group '{name}' UUID is: {rg.uuid}",
            obj_refs={"RscGrp": name, "UUID": rg.uuid},
        )
    ]


def modify_rg(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RG_MODIFY)
    rg = emu.rg(req.params["rg"], rc.MASK_MOD, RG)
    new_filter = None
    if data.get("select_filter") is not None:
        new_filter = placement.check_filter(data["select_filter"], rc.MASK_MOD, RG)
    props.validate_props(data.get("override_props") or {}, rc.MASK_MOD, RG)
    entries = modify_props(rg, data, f"Resource group '{rg.name}'", RG, {"RscGrp": rg.name})
    if data.get("description") is not None:
        rg.description = data["description"]
    if data.get("peer_slots") is not None:
        rg.peer_slots = data["peer_slots"]
    if new_filter is not None:
        rg.select_filter = placement.merge_filters(rg.select_filter, new_filter)
        if "place_count" in new_filter:
            # The controller re-runs autoplace for every RD of the group right away.
            for rd in _rds_of(emu, rg):
                try:
                    entries.extend(ops.autoplace(emu, rd, ops.effective_filter(emu, rd, None)))
                except rc.ApiFailure as failure:
                    entries.extend(failure.entries)
    return entries


def _rds_of(emu: Emulator, rg: st.ResourceGroup) -> list[st.ResourceDefinition]:
    return [
        rd
        for _, rd in in_key_order(emu.state.resource_definitions)
        if names.key(rd.resource_group) == names.key(rg.name) and rd.volume_definitions
    ]


def delete_rg(emu: Emulator, req: Request) -> list[rc.Entry]:
    name = req.params["rg"]
    rc.refuse_invalid(names.resource_group_name_problem(name), rc.FAIL_INVLD_RSC_GRP_NAME)
    rg = emu.state.resource_groups.get(names.key(name))
    if rg is None:
        return [rc.warn(rc.WARN_NOT_FOUND, f"Resource group '{name}' not found.", obj_refs={"RscGrp": name})]
    users = [
        rd.name
        for rd in emu.state.resource_definitions.values()
        if names.key(rd.resource_group) == names.key(name)
    ]
    if users:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_RSC_DFN,
                f"Cannot delete resource group '{rg.name}' because it has existing resource definitions.",
                details="Resource definitions: " + ", ".join(sorted(users)[:20]),
                obj_refs={"RscGrp": rg.name},
            )
        )
    if names.key(name) == names.key("DfltRscGrp"):
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_RSC_GRP_NAME, "The default resource group cannot be deleted.")
        )
    del emu.state.resource_groups[names.key(name)]
    return [rc.success(rc.DELETED, f"Resource group '{rg.name}' deleted.", obj_refs={"RscGrp": rg.name})]


# ---------------------------------------------------------------------- volume groups


def list_vgs(emu: Emulator, req: Request) -> Json:
    rg = emu.rg(req.params["rg"])
    return Json([views.volume_group(vg) for vg in sorted(rg.volume_groups.values(), key=lambda v: v.number)])


def get_vg(emu: Emulator, req: Request) -> Json:
    rg = emu.rg(req.params["rg"])
    vg = rg.volume_groups.get(_vlm_nr(req.params["nr"]))
    if vg is None:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_NOT_FOUND_VLM_GRP, f"Volume group {req.params['nr']} not found.")
        )
    return Json(views.volume_group(vg))


def _vlm_nr(text: str, op: int = 0, obj: int = 0) -> str:
    try:
        nr = int(text)
    except ValueError:
        nr = -1
    if not 0 <= nr <= 65534:
        raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_VLM_NR, f"Invalid volume number '{text}'", op, obj))
    return str(nr)


def create_vg(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.VG_CREATE, required=False)
    rg = emu.rg(req.params["rg"], rc.MASK_CRT, rc.MASK_VLM_GRP)
    nr = data.get("volume_number")
    if nr is None:
        nr = 0
        while str(nr) in rg.volume_groups:
            nr += 1
    key = _vlm_nr(str(nr), rc.MASK_CRT, rc.MASK_VLM_GRP)
    if key in rg.volume_groups:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_VLM_GRP, f"A volume group with number '{nr}' already exists in '{rg.name}'."
            )
        )
    props.validate_props(data.get("props") or {}, rc.MASK_CRT, rc.MASK_VLM_GRP)
    rg.volume_groups[key] = st.VolumeGroup(
        number=int(key), props=dict(data.get("props") or {}), flags=data.get("flags") or []
    )
    return [rc.success(rc.CREATED, f"Volume group {key} of resource group '{rg.name}' created.")]


def modify_vg(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.VG_MODIFY)
    rg = emu.rg(req.params["rg"], rc.MASK_MOD, rc.MASK_VLM_GRP)
    vg = rg.volume_groups.get(_vlm_nr(req.params["nr"], rc.MASK_MOD, rc.MASK_VLM_GRP))
    if vg is None:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_NOT_FOUND_VLM_GRP, f"Volume group {req.params['nr']} not found.")
        )
    return modify_props(vg, data, f"Volume group {vg.number}", rc.MASK_VLM_GRP, {"RscGrp": rg.name})


def delete_vg(emu: Emulator, req: Request) -> list[rc.Entry]:
    rg = emu.rg(req.params["rg"], rc.MASK_DEL, rc.MASK_VLM_GRP)
    key = _vlm_nr(req.params["nr"], rc.MASK_DEL, rc.MASK_VLM_GRP)
    if rg.volume_groups.pop(key, None) is None:
        return [rc.warn(rc.WARN_NOT_FOUND, f"Volume group {key} of '{rg.name}' not found.")]
    return [rc.success(rc.DELETED, f"Volume group {key} of resource group '{rg.name}' deleted.")]


# ---------------------------------------------------------------------- spawn, adjust, size info


def spawn(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(emu.config.controller.spawn_spec())
    rg = emu.rg(req.params["rg"], rc.MASK_CRT, rc.MASK_RSC_DFN)
    name = data.get("resource_definition_name") or ""
    sizes = data.get("volume_sizes") or []
    request_filter = placement.check_filter(data.get("select_filter"), rc.MASK_CRT, rc.MASK_RSC_DFN)
    vgs, notes = _spawn_volume_groups(rg, len(sizes), bool(data.get("partial")))
    rd, entries = new_rd(
        emu,
        name,
        external_name=data.get("resource_definition_external_name") or "",
        rd_props=data.get("resource_definition_props") or {},
        rg_name=rg.name,
    )
    for size in sizes:
        new_vd_check_size(size)
    emu.state.resource_definitions[names.key(rd.name)] = rd
    emu.reservations.claim(names.key(rd.name))  # a name made from the external name
    try:
        for idx, size in enumerate(sizes):
            # The volume group gives its number and flags; its props stay on the group, where the
            # controller's lookup (resource, VD, volume group, RD, group) finds them.
            vg = vgs[idx] if idx < len(vgs) else None
            spec: dict[str, Any] = {"size_kib": size, "flags": list(vg.flags) if vg else []}
            if vg is not None:
                spec["volume_number"] = vg.number
            entries.extend(new_vd(emu, rd, spec))
        if data.get("definitions_only"):
            entries.append(
                rc.info(rc.INFO_NO_RSC_SPAWNED, f"No resources spawned for '{rd.name}' (definitions only).")
            )
        else:
            flt = ops.effective_filter(emu, rd, request_filter)
            entries.extend(ops.autoplace(emu, rd, flt, rc.MASK_CRT, rc.MASK_RSC))
    except rc.ApiFailure:
        purge_rd(emu, rd)
        raise
    return notes + entries


def _spawn_volume_groups(
    rg: st.ResourceGroup, n_sizes: int, partial: bool
) -> tuple[list[st.VolumeGroup], list[rc.Entry]]:
    """The group's volume groups in number order, or 228 when the sizes do not match them.

    A group without volume groups spawns in partial mode (with an INFO entry saying so);
    otherwise every volume group needs a size unless ``partial`` is set.
    """
    vgs = sorted(rg.volume_groups.values(), key=lambda v: v.number)
    if not vgs and not partial:
        note = rc.info(
            0,
            "Resource-group doesn't have any volume-groups, automatically assume partial mode.",
            0,
            RG,
        )
        return vgs, [note]
    if n_sizes != len(vgs) and not partial:
        inline = f"resource group '{rg.name}'"
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_VLM_SIZES,
                f"Invalid count of volume sizes to spawn {inline}",
                rc.MASK_CRT,
                RG,
                details=f"The {inline} has {len(vgs)} Volume groups, but only {n_sizes} sizes were provided.",
                correction="Either provide the correct count of volume sizes or use the 'partial' option",
                obj_refs={"RscGrp": rg.name},
            )
        )
    return vgs, []


def new_vd_check_size(size: int) -> None:
    if not 4 <= size <= 1 << 40:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_VLM_SIZE,
                f"Volume size {size} KiB is out of range (4 KiB to {1 << 40} KiB).",
                rc.MASK_CRT,
                rc.MASK_VLM_DFN,
            )
        )


def adjust(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RG_ADJUST, required=False)
    rg = emu.rg(req.params["rg"], rc.MASK_CRT, rc.MASK_RSC)
    request_filter = placement.check_filter(data.get("select_filter"), rc.MASK_CRT, rc.MASK_RSC)
    entries: list[rc.Entry] = []
    for rd in _rds_of(emu, rg):
        try:
            entries.extend(ops.autoplace(emu, rd, ops.effective_filter(emu, rd, request_filter)))
        except rc.ApiFailure as failure:
            entries.extend(failure.entries)
    return entries


def query_size_info(emu: Emulator, req: Request) -> Json:
    data = req.body(body.QUERY_SIZE_INFO, required=False)
    rg = emu.rg(req.params["rg"])
    flt = placement.merge_filters(rg.select_filter, placement.check_filter(data.get("select_filter"), 0, 0))
    count = flt.get("place_count", 2)
    usable = []
    capacity = 0
    for c in ops.candidates(emu):
        if placement.qualifies(c, flt, "", 0) is not None:
            continue
        est = c.estimated_free_kib()
        if est is None:
            continue
        usable.append((est, c))
    usable.sort(key=lambda x: -x[0])
    chosen: dict[str, tuple[float, placement.Candidate]] = {}
    for est, c in usable:
        chosen.setdefault(names.key(c.node), (est, c))
    best = sorted(chosen.values(), key=lambda x: -x[0])[:count]
    if len(best) < count:
        return Json({"reports": [rc.error(rc.FAIL_NOT_ENOUGH_NODES, "Not enough available nodes").to_json()]})
    max_size = int(min(e for e, _ in best))
    available = int(min(c.free_kib or 0 for _, c in best))
    capacity = int(min(c.total_kib or 0 for _, c in best))
    return Json(
        {
            "space_info": {
                "max_vlm_size_in_kib": max(max_size, 0),
                "available_size_in_kib": available,
                "capacity_in_kib": capacity,
                "default_max_oversubscription_ratio": placement.THIN_OVERSUBSCRIPTION,
                "max_oversubscription_ratio": placement.THIN_OVERSUBSCRIPTION,
                "max_free_capacity_oversubscription_ratio": placement.THIN_OVERSUBSCRIPTION,
                "max_total_capacity_oversubscription_ratio": placement.THIN_OVERSUBSCRIPTION,
            }
        }
    )

"""Resources: manual create, autoplace, make-available, delete, volumes and the resource view."""

from __future__ import annotations

from typing import Any

from emulator import body, names, ops, placement, props, tiebreaker, views
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import DISKLESS_POOL
from emulator.core import Emulator
from emulator.definitions import find_vd
from emulator.listing import chosen, modify_props, name_filter
from emulator.ordered import in_key_order
from emulator.routing import Json, Request, paginate

RSC = rc.MASK_RSC
CRT = rc.MASK_CRT


def find_rsc(
    emu: Emulator, rd: st.ResourceDefinition, node_name: str, op: int = 0, obj: int = 0
) -> st.Resource:
    rc.refuse_invalid(names.node_name_problem(node_name), rc.FAIL_INVLD_NODE_NAME, op, obj)
    rsc = rd.resources.get(names.key(node_name))
    if rsc is None:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_RSC,
                f"Resource '{rd.name}' on node '{node_name}' not found.",
                op,
                obj,
                obj_refs={"RscDfn": rd.name, "Node": node_name},
            )
        )
    return rsc


def _wants_diskless(emu: Emulator, flags: list[str], stack: list[str], op: int) -> bool:
    flags = [f.upper() for f in flags]
    if "DRBD_DISKLESS" not in flags and "DISKLESS" not in flags:
        return False
    if "DRBD" not in stack:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_LAYER_STACK,
                "A diskless resource needs the DRBD layer, which this layer stack does not contain.",
                op,
                RSC,
            )
        )
    return True


def create_one(
    emu: Emulator, rd: st.ResourceDefinition, spec: dict[str, Any], node_name: str
) -> list[rc.Entry]:
    """POST resources: create on a node, or report/convert what is there (§3.6)."""
    rsc_spec = spec.get("resource") or {}
    node = emu.node(node_name, CRT, RSC)
    rsc_props = dict(rsc_spec.get("props") or {})
    props.validate_props(rsc_props, CRT, RSC)
    stack, entries = emu.layer_stack(rd, spec.get("layer_list"), CRT, RSC)
    diskless = _wants_diskless(emu, rsc_spec.get("flags") or [], stack, CRT)
    if diskless and "StorPoolName" not in rsc_props:
        rsc_props["StorPoolName"] = DISKLESS_POOL
    existing = rd.resources.get(names.key(node.name))
    if existing is not None:
        if existing.diskless and not diskless:
            return entries + toggle_to_diskful(emu, rd, existing, rsc_props)
        if diskless and tiebreaker.make_ordinary(emu, rd, existing):
            return entries + tiebreaker.manage(emu, rd)
        return [
            *entries,
            rc.info(
                rc.INFO_RSC_ALREADY_EXISTS,
                f"Resource '{rd.name}' on node '{node.name}' already exists.",
                CRT,
                RSC,
                obj_refs={"RscDfn": rd.name, "Node": node.name},
            ),
        ]
    entries += ops.deploy(emu, rd, node, diskless=diskless, stack=stack, props=rsc_props)
    return entries + tiebreaker.manage(emu, rd)


def toggle_to_diskful(
    emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, rsc_props: dict[str, str]
) -> list:
    """A diskful request on a DRBD-diskless resource gives it a disk, as the controller does."""
    node = emu.node(rsc.node, CRT, RSC)
    wanted = dict(rsc.props)
    wanted.pop("StorPoolName", None)
    wanted.update({k: v for k, v in rsc_props.items() if not (k == "StorPoolName" and v == DISKLESS_POOL)})
    saved = rd.resources.pop(names.key(node.name))
    try:
        entries = ops.deploy(emu, rd, node, stack=rd.layer_stack or ["DRBD", "STORAGE"], props=wanted)
    except rc.ApiFailure:
        rd.resources[names.key(node.name)] = saved
        raise
    new = rd.resources[names.key(node.name)]
    new.uuid, new.create_ts, new.node_id = saved.uuid, saved.create_ts, saved.node_id
    return entries + tiebreaker.manage(emu, rd)


def list_rscs(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    out = [views.resource(emu, rd, r) for _, r in sorted(rd.resources.items())]
    return Json(paginate(out, req))


def get_rsc(emu: Emulator, req: Request) -> Json:
    rd = emu.rd(req.params["rd"])
    return Json(views.resource(emu, rd, find_rsc(emu, rd, req.params["node"])))


def create_rscs(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.json()
    if not isinstance(data, list):
        raise body.ParseError("expected a list of resource create requests")
    specs = [body.check(item, body.RSC_CREATE, f"body[{i}]") for i, item in enumerate(data)]
    rd = emu.rd(req.params["rd"], CRT, RSC)
    entries: list[rc.Entry] = []
    for spec in specs:
        node_name = (spec.get("resource") or {}).get("node_name") or ""
        entries.extend(create_one(emu, rd, spec, node_name))
    return entries


def create_rsc(emu: Emulator, req: Request) -> list[rc.Entry]:
    spec = req.body(body.RSC_CREATE, required=False)
    rd = emu.rd(req.params["rd"], CRT, RSC)
    return create_one(emu, rd, spec, req.params["node"])


def modify_rsc(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.RSC_MODIFY)
    rd = emu.rd(req.params["rd"], rc.MASK_MOD, RSC)
    rsc = find_rsc(emu, rd, req.params["node"], rc.MASK_MOD, RSC)
    entries = modify_props(
        rsc, data, f"Resource '{rd.name}' on node '{rsc.node}'", RSC, {"RscDfn": rd.name, "Node": rsc.node}
    )
    if not ops.node_online(emu, rsc.node):
        entries.append(ops.not_connected(rsc.node, rc.MASK_MOD, RSC))
    return entries


def delete_rsc(emu: Emulator, req: Request) -> list[rc.Entry]:
    rd_name, node_name = req.params["rd"], req.params["node"]
    rc.refuse_invalid(names.resource_name_problem(rd_name), rc.FAIL_INVLD_RSC_NAME)
    rd = emu.state.resource_definitions.get(names.key(rd_name))
    rsc = rd.resources.get(names.key(node_name)) if rd else None
    if rd is None or rsc is None:
        if rd is not None or names.node_name_problem(node_name) is None:
            return [
                rc.warn(
                    rc.WARN_NOT_FOUND,
                    f"Resource '{rd_name}' on node '{node_name}' not found.",
                    obj_refs={"RscDfn": rd_name, "Node": node_name},
                )
            ]
        raise rc.ApiFailure(rc.error(rc.FAIL_INVLD_NODE_NAME, names.node_name_problem(node_name) or ""))
    ops.check_deletable(emu, rd, rsc, rc.MASK_DEL, RSC)
    entries, goes_ahead = tiebreaker.before_delete(emu, rd, rsc, req.q_bool("keep_tiebreaker"))
    if not goes_ahead:
        return entries
    entries += ops.delete_resource_entries(emu, rd, rsc)
    return entries + tiebreaker.manage(emu, rd)


def autoplace(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.AUTOPLACE, required=False)
    rd = emu.rd(req.params["rd"], CRT, RSC)
    request_filter = placement.check_filter(data.get("select_filter"), CRT, RSC)
    # As the controller's REST layer: the request's top-level fields overwrite the filter's
    # (diskless_on_remaining defaults to false; layer_list, when empty, leaves the group's stack).
    request_filter["diskless_on_remaining"] = bool(data.get("diskless_on_remaining"))
    request_filter.pop("layer_stack", None)
    flt = ops.effective_filter(emu, rd, request_filter, data.get("layer_list"))
    return ops.autoplace(emu, rd, flt)


def make_available(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.MAKE_AVAILABLE, required=False)
    rd = emu.rd(req.params["rd"], CRT, RSC)
    node = emu.node(req.params["node"], CRT, RSC)
    diskful = bool(data.get("diskful"))
    existing = rd.resources.get(names.key(node.name))
    refs = {"RscDfn": rd.name, "Node": node.name}
    if existing is not None:
        if diskful and existing.diskless:
            return toggle_to_diskful(emu, rd, existing, {})
        if tiebreaker.make_ordinary(emu, rd, existing):
            return [
                rc.success(0, "Resource already deployed as requested", obj_refs=refs),
                *tiebreaker.manage(emu, rd),
            ]
        return [rc.success(0, "Resource already deployed as requested", obj_refs=refs)]
    stack, entries = emu.layer_stack(rd, data.get("layer_list"), CRT, RSC)
    has_disk_peer = any(not r.diskless for r in rd.resources.values())
    if not diskful and "DRBD" in stack and has_disk_peer:
        if not _has_diskless_pool_online(emu, node):
            raise _no_pool_on(node, diskless=True)
        entries += ops.deploy(
            emu, rd, node, diskless=True, stack=stack, props={"StorPoolName": DISKLESS_POOL}
        )
        return entries + tiebreaker.manage(emu, rd)
    if not node.online:
        raise _no_pool_on(node, diskless=False)
    flt = ops.effective_filter(
        emu, rd, {"node_name_list": [node.name], "additional_place_count": 1}, data.get("layer_list")
    )
    flt.pop("diskless_on_remaining", None)
    try:
        return entries + ops.autoplace(emu, rd, flt)
    except rc.ApiFailure as exc:
        if exc.entries and exc.entries[0].code == rc.FAIL_NOT_ENOUGH_NODES:
            raise _no_pool_on(node, diskless=False) from None
        raise


def _has_diskless_pool_online(emu: Emulator, node: st.Node) -> bool:
    return node.online and any(p.kind == "DISKLESS" for p in emu.pools_of(names.key(node.name)))


def _no_pool_on(node: st.Node, *, diskless: bool) -> rc.ApiFailure:
    """The controller's answer when the autoplacer finds no pool on the asked node (offline, unfit)."""
    kind = "diskless" if diskless else "diskful"
    return rc.ApiFailure(
        rc.error(
            rc.FAIL_NOT_FOUND_STOR_POOL,
            f"Autoplacer could not find {kind} stor pool on node {node.name} matching resource-groups "
            "autoplace-settings",
            CRT,
            RSC,
            obj_refs={"Node": node.name},
        )
    )


# ---------------------------------------------------------------------- volumes


def _listed_resource(emu: Emulator, name: str, node: str) -> tuple[st.ResourceDefinition, st.Resource]:
    """The resource whose volumes the volumes routes answer with.

    The controller answers these routes from its volume list filtered by resource and
    node (``rest/v1/Volumes.java``), so a missing definition, a missing resource and a
    resource without volumes all get the same 404: FAIL_NOT_FOUND_RSC (302), "Resource
    'x' not found on node 'y'." (not the definition's 301 of the other routes).
    """
    rc.refuse_invalid(names.resource_name_problem(name), rc.FAIL_INVLD_RSC_NAME)
    rc.refuse_invalid(names.node_name_problem(node), rc.FAIL_INVLD_NODE_NAME)
    rd = emu.state.resource_definitions.get(names.key(name))
    rsc = rd.resources.get(names.key(node)) if rd is not None else None
    if rd is None or rsc is None or not rsc.volumes:
        raise rc.ApiFailure(rc.error(rc.FAIL_NOT_FOUND_RSC, f"Resource '{name}' not found on node '{node}'."))
    return rd, rsc


def list_volumes(emu: Emulator, req: Request) -> Json:
    rd, rsc = _listed_resource(emu, req.params["rd"], req.params["node"])
    out = [
        views.volume(emu, rd, rsc, vd)
        for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number)
        if str(vd.number) in rsc.volumes
    ]
    return Json(paginate(out, req))


def get_volume(emu: Emulator, req: Request) -> Json:
    rd, rsc = _listed_resource(emu, req.params["rd"], req.params["node"])
    try:
        vd = find_vd(emu, rd, req.params["nr"])
    except rc.ApiFailure as exc:
        vd = None
        if exc.entries[0].code != rc.FAIL_NOT_FOUND_VLM_DFN:
            raise
    if vd is None or str(vd.number) not in rsc.volumes:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_NOT_FOUND_VLM,
                f"Volume '{req.params['nr']}' of resource '{rd.name}' on node '{rsc.node}' not found.",
            )
        )
    return Json(views.volume(emu, rd, rsc, vd))


def view_resources(emu: Emulator, req: Request) -> Json:
    nodes = name_filter(req, "nodes", names.node_name_problem, code=rc.FAIL_INVLD_NODE_NAME)
    rds = name_filter(req, "resources", names.resource_name_problem, code=rc.FAIL_INVLD_RSC_NAME)
    pools = name_filter(
        req, "storage_pools", names.storage_pool_name_problem, code=rc.FAIL_INVLD_STOR_POOL_NAME
    )
    pf = props.parse_filters(req.q("props"))
    items: list[tuple[st.ResourceDefinition, st.Resource]] = []
    for _, rd in chosen(emu.state.resource_definitions, rds):
        if not rd.resources:
            continue
        for nk, rsc in in_key_order(rd.resources):
            if nodes is not None and nk not in nodes:
                continue
            if not rsc.volumes:
                continue
            if pools is not None and not any(names.key(v.pool) in pools for v in rsc.volumes.values()):
                continue
            if pf and not props.matches_parsed(rsc.props, pf):
                continue
            items.append((rd, rsc))
    out = []
    for rd, rsc in paginate(items, req):
        data = views.resource_with_volumes(emu, rd, rsc)
        if pools is not None:
            data["volumes"] = [
                v for v in data["volumes"] if names.key(v.get("storage_pool_name", "")) in pools
            ]
        out.append(data)
    return Json(out)

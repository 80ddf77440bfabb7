"""Controller version, nodes, storage pools and the key-value store."""

from __future__ import annotations

from datetime import UTC, datetime

from emulator import body, names, props, views
from emulator import retcodes as rc
from emulator import state as st
from emulator.core import Emulator
from emulator.listing import listed, modify_props, name_filter
from emulator.routing import Json, Request, paginate


def version(emu: Emulator, req: Request) -> Json:
    built = datetime.fromtimestamp(emu.started, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    return Json(
        {
            "version": emu.config.version,
            "git_hash": "emulator",
            "build_time": built,
            "rest_api_version": emu.config.rest_api_version,
        }
    )


def health(emu: Emulator, req: Request) -> Json:
    """The controller's always-open liveness path."""
    return Json({})


def list_nodes(emu: Emulator, req: Request) -> Json:
    wanted = name_filter(req, "nodes", names.node_name_problem, code=rc.FAIL_INVLD_NODE_NAME)
    return Json([views.node(emu, n) for n in listed(req, emu.state.nodes, wanted)])


def get_node(emu: Emulator, req: Request) -> Json:
    return Json(views.node(emu, emu.node(req.params["node"])))


def modify_node(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.NODE_MODIFY)
    node = emu.node(req.params["node"], rc.MASK_MOD, rc.MASK_NODE)
    return modify_props(node, data, f"Node '{node.name}'", rc.MASK_NODE, {"Node": node.name})


# ---------------------------------------------------------------------- storage pools


def view_pools(emu: Emulator, req: Request) -> Json:
    nodes = name_filter(req, "nodes", names.node_name_problem, code=rc.FAIL_INVLD_NODE_NAME)
    pools = name_filter(
        req, "storage_pools", names.storage_pool_name_problem, code=rc.FAIL_INVLD_STOR_POOL_NAME
    )
    pf = req.q("props")
    out = []
    for nk in sorted(emu.state.pools):
        if nodes is not None and nk not in nodes:
            continue
        for p in emu.pools_of(nk):
            if pools is not None and names.key(p.name) not in pools:
                continue
            if props.matches_filters(p.props, pf):
                out.append(views.pool(emu, p))
    out.sort(key=lambda p: (names.key(p["storage_pool_name"]), names.key(p["node_name"])))
    return Json(paginate(out, req))


def node_pools(emu: Emulator, req: Request) -> Json:
    node = emu.node(req.params["node"])
    out = [views.pool(emu, p) for p in emu.pools_of(names.key(node.name))]
    return Json(paginate(out, req))


def node_pool(emu: Emulator, req: Request) -> Json:
    node = emu.node(req.params["node"])
    return Json(views.pool(emu, emu.pool(node, req.params["pool"])))


_POOL_KINDS = {"FILE_THIN", "FILE", "DISKLESS"}


def create_pool(emu: Emulator, req: Request) -> list[rc.Entry]:
    """An extra pool on a node (bootstrap only); FILE pools live under the emulator's state dir."""
    data = req.body(body.POOL_CREATE)
    node = emu.node(req.params["node"], rc.MASK_CRT, rc.MASK_STOR_POOL)
    name = data.get("storage_pool_name") or ""
    rc.refuse_invalid(names.storage_pool_name_problem(name), rc.FAIL_INVLD_STOR_POOL_NAME)
    kind = (data.get("provider_kind") or "").upper()
    if kind not in _POOL_KINDS:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_STLT_DOES_NOT_SUPPORT_PROVIDER,
                f"Node '{node.name}' does not support the storage provider '{kind or '(none)'}'.",
                details="The emulator provides FILE_THIN, FILE and DISKLESS pools.",
            )
        )
    pools = emu.state.pools.setdefault(names.key(node.name), {})
    if names.key(name) in pools:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_STOR_POOL,
                f"A storage pool with the name '{name}' already exists on node '{node.name}'.",
                obj_refs={"Node": node.name, "StorPool": name},
            )
        )
    pool_props = dict(data.get("props") or {})
    pool_props.pop("StorDriver/FileDir", None)
    props.validate_props(pool_props, rc.MASK_CRT, rc.MASK_STOR_POOL)
    if kind != "DISKLESS":
        pool_props["StorDriver/StorPoolName"] = str(emu.storage.pool_path(node.name, name))
    pool = st.Pool(node=node.name, name=name, kind=kind, props=pool_props)
    pools[names.key(name)] = pool
    return [
        rc.success(
            rc.CREATED,
            f"New storage pool '{name}' on node '{node.name}' registered.",
            details=f"Storage pool '{name}' on node '{node.name}' UUID is: {pool.uuid}",
            obj_refs={"Node": node.name, "StorPool": name},
        )
    ]


def delete_pool(emu: Emulator, req: Request) -> list[rc.Entry]:
    node = emu.node(req.params["node"], rc.MASK_DEL, rc.MASK_STOR_POOL)
    name = req.params["pool"]
    pools = emu.state.pools.get(names.key(node.name), {})
    if names.key(name) not in pools:
        return [rc.warn(rc.WARN_NOT_FOUND, f"Storage pool '{name}' on node '{node.name}' not found.")]
    pool = pools[names.key(name)]
    if pool.name in (emu.config.pool_name, "DfltDisklessStorPool"):
        raise rc.ApiFailure(rc.error(rc.FAIL_IN_USE, f"The emulator's built-in pool '{pool.name}' stays."))
    for rd in emu.state.resource_definitions.values():
        rsc = rd.resources.get(names.key(node.name))
        if rsc is not None and any(names.key(v.pool) == names.key(name) for v in rsc.volumes.values()):
            raise rc.ApiFailure(
                rc.error(
                    rc.FAIL_IN_USE,
                    f"Storage pool '{pool.name}' on node '{node.name}' still has volumes.",
                    details=f"Resource: {rd.name}",
                )
            )
    del pools[names.key(name)]
    return [rc.success(rc.DELETED, f"Storage pool '{pool.name}' on node '{node.name}' deleted.")]


# ---------------------------------------------------------------------- key-value store


def _kvs_name(name: str, op: int) -> str:
    rc.refuse_invalid(names.kvs_name_problem(name), rc.FAIL_INVLD_KVS_NAME, op, rc.MASK_KVS)
    return name


def list_kvs(emu: Emulator, req: Request) -> Json:
    out = [{"name": k.name, "props": dict(k.props)} for _, k in sorted(emu.state.kvs.items())]
    return Json([views.omit_empty(o) for o in out])


def get_kvs(emu: Emulator, req: Request) -> Json:
    name = _kvs_name(req.params["instance"], 0)
    kvs = emu.state.kvs.get(names.key(name))
    if kvs is None:
        raise rc.ApiFailure(rc.error(rc.FAIL_NOT_FOUND_KVS, f"Key-value store '{name}' not found."))
    return Json(views.omit_empty({"name": kvs.name, "props": dict(kvs.props)}))


def modify_kvs(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(body.KVS_MODIFY)
    name = _kvs_name(req.params["instance"], rc.MASK_MOD)
    for k, v in (data.get("override_props") or {}).items():
        if not isinstance(v, str) or not k:
            raise rc.ApiFailure(
                rc.error(rc.FAIL_INVLD_PROP, f"Invalid property '{k}'", rc.MASK_MOD, rc.MASK_KVS)
            )
    kvs = emu.state.kvs.setdefault(names.key(name), st.KeyValueStore(name=name))
    kvs.props = props.apply_modify(
        kvs.props,
        data.get("override_props") or {},
        data.get("delete_props") or [],
        data.get("delete_namespaces") or [],
    )
    if not kvs.props:
        emu.state.kvs.pop(names.key(name), None)
    return [rc.success(rc.MODIFIED, f"Key-value store '{name}' modified.", obj_refs={"KvsName": name})]


def delete_kvs(emu: Emulator, req: Request) -> list[rc.Entry]:
    name = _kvs_name(req.params["instance"], rc.MASK_DEL)
    if emu.state.kvs.pop(names.key(name), None) is None:
        return [rc.warn(rc.WARN_NOT_FOUND, f"Key-value store '{name}' not found.")]
    return [rc.success(rc.DELETED, f"Key-value store '{name}' deleted.")]

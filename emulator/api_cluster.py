"""What an ordinary ``linstor`` client session touches beyond volumes.

Controller properties (list, set), ``node create`` of a (virtual) satellite, and the lists a
client shows on a cluster that uses none of them: physical storage, error reports, schedules.
The answers have the controller's shapes; an empty list is what a controller with nothing of
that kind answers (Jackson leaves out the empty list of the schedule wrapper, so that is ``{}``).
Remotes (``/v1/remotes``) belong to the backup part of the emulator.
"""

from __future__ import annotations

import re
from typing import Any

from emulator import addresses, body, names, props
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import DISKLESS_POOL
from emulator.core import Emulator
from emulator.ops import cluster_id
from emulator.routing import Json, Request

CTRL = rc.MASK_CTRL_CONF
NODE = rc.MASK_NODE

#: A fresh controller's own properties (none a client needs; the list starts empty).
DEFAULT_CONTROLLER_PROPS: dict[str, str] = {}

_RANGE = re.compile(r"[0-9]+-[0-9]+")
#: Controller-only keys and their value checks.
_CONTROLLER_KEYS: dict[str, Any] = {
    "TcpPortAutoRange": lambda v: None if _RANGE.fullmatch(v) else "must be LOW-HIGH, e.g. 7000-7999",
    "MinorNrAutoRange": lambda v: None if _RANGE.fullmatch(v) else "must be LOW-HIGH, e.g. 1000-49999",
    "PeerSlotsNewResource": lambda v: None if v.isdigit() and 1 <= int(v) <= 31 else "must be 1-31",
}

CONTROLLER_PROPS_MODIFY = body.Obj(dict(body.PROPS_MODIFY))
NET_INTERFACE = body.Obj(
    {
        "name": body.STR,
        "address": body.STR,
        "satellite_port": body.INT,
        "satellite_encryption_type": body.STR,
        "is_active": body.BOOL,
        "uuid": body.STR,
    }
)
NODE_CREATE = body.Obj(
    {
        "name": body.STR,
        "type": body.STR,
        "flags": body.STR_LIST,
        "props": body.PROPS,
        "net_interfaces": body.ListOf(NET_INTERFACE),
        "connection_status": body.STR,
        "uuid": body.STR,
        "storage_providers": body.STR_LIST,
        "resource_layers": body.STR_LIST,
        "unsupported_providers": body.ANY,
        "unsupported_layers": body.ANY,
    }
)
#: Node types the emulator registers as virtual nodes; storage nodes get the diskless pool.
_NODE_TYPES = {"SATELLITE": True, "COMBINED": True, "CONTROLLER": False, "AUXILIARY": False}
_ENCRYPTIONS = {"PLAIN": 3366, "SSL": 3367}


def controller_props(emu: Emulator) -> dict[str, str]:
    """The defaults a controller starts with, its cluster id, then what clients set."""
    return {**DEFAULT_CONTROLLER_PROPS, "Cluster/LocalID": cluster_id(emu), **emu.state.controller_props}


def _controller_key_problem(key: str, value: str) -> str | None:
    check = _CONTROLLER_KEYS.get(key)
    if check is not None:
        why = check(value)
        return None if why is None else f"The value '{value}' is not valid for the key '{key}': it {why}"
    return props.key_problem(key, value)


def list_controller_props(emu: Emulator, req: Request) -> Json:
    return Json(controller_props(emu))


def set_controller_props(emu: Emulator, req: Request) -> list[rc.Entry]:
    data = req.body(CONTROLLER_PROPS_MODIFY)
    override = data.get("override_props") or {}
    for key, value in override.items():
        problem = _controller_key_problem(key, value)
        if problem:
            raise rc.ApiFailure(
                rc.error(rc.FAIL_INVLD_PROP, problem, rc.MASK_MOD, CTRL, details=f"Property: {key}={value}")
            )
    emu.state.controller_props = props.apply_modify(
        emu.state.controller_props,
        override,
        data.get("delete_props") or [],
        data.get("delete_namespaces") or [],
    )
    entries = [
        rc.success(rc.MODIFIED, f"Successfully set property '{k}' to value '{v}'", rc.MASK_MOD, CTRL)
        for k, v in sorted(override.items())
    ]
    for key in data.get("delete_props") or []:
        entries.append(rc.success(rc.DELETED, f"Successfully deleted property '{key}'", rc.MASK_DEL, CTRL))
    return entries or [rc.success(rc.MODIFIED, "Controller properties unchanged.", rc.MASK_MOD, CTRL)]


def create_node(emu: Emulator, req: Request) -> list[rc.Entry]:
    """A new satellite; the emulator plays it as a virtual node that connects at once."""
    data = req.body(NODE_CREATE)
    name = data.get("name") or ""
    rc.refuse_invalid(names.node_name_problem(name), rc.FAIL_INVLD_NODE_NAME)
    kind = (data.get("type") or "").upper()
    if kind not in _NODE_TYPES:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_NODE_TYPE,
                f"Invalid node type '{data.get('type') or ''}'",
                details="The emulator registers SATELLITE, COMBINED, CONTROLLER and AUXILIARY nodes.",
                obj_refs={"Node": name},
            )
        )
    netifs = data.get("net_interfaces") or []
    if not netifs:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_NET_ADDR,
                f"Node '{name}' needs a network interface with an address.",
                correction="Give the satellite's IP address (linstor node create NAME ADDRESS).",
                obj_refs={"Node": name},
            )
        )
    netif = netifs[0]
    address = (netif.get("address") or "").strip()
    problem = addresses.address_problem(address)
    if problem:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_NET_ADDR, f"Invalid network address: {problem}", obj_refs={"Node": name})
        )
    encryption = (netif.get("satellite_encryption_type") or "PLAIN").upper()
    if encryption not in _ENCRYPTIONS:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_INVLD_NET_TYPE,
                f"Invalid satellite encryption type '{encryption}' (PLAIN or SSL).",
                obj_refs={"Node": name},
            )
        )
    port = netif.get("satellite_port")
    port = _ENCRYPTIONS[encryption] if port is None else port
    if not 1 <= port <= 65535:
        raise rc.ApiFailure(
            rc.error(rc.FAIL_INVLD_NET_PORT, f"Invalid port number {port}", obj_refs={"Node": name})
        )
    node_props = dict(data.get("props") or {})
    props.validate_props(node_props, rc.MASK_CRT, NODE)
    key = names.key(name)
    if key in emu.state.nodes:
        raise rc.ApiFailure(
            rc.error(
                rc.FAIL_EXISTS_NODE,
                f"Registration of node '{name}' failed.",
                cause=f"A node with the name '{emu.state.nodes[key].name}' already exists.",
                obj_refs={"Node": name},
            )
        )
    node = st.Node(
        name=name,
        type=kind,
        props={"CurStltConnName": netif.get("name") or "default", "NodeUname": name, **node_props},
        address=address,
        port=port,
        encryption=encryption,
    )
    emu.state.nodes[key] = node
    if _NODE_TYPES[kind]:
        pools = emu.state.pools.setdefault(key, {})
        pools[names.key(DISKLESS_POOL)] = st.Pool(node=name, name=DISKLESS_POOL, kind="DISKLESS")
    return [
        rc.success(
            rc.CREATED,
            f"New node '{name}' registered.",
            details=f"Node '{name}' UUID is: {node.uuid}",
            obj_refs={"Node": name, "UUID": node.uuid},
        )
    ]


def physical_storage(emu: Emulator, req: Request) -> Json:
    """No unused disks: the emulator's pools are files, nothing a satellite would offer."""
    return Json([])


def error_reports(emu: Emulator, req: Request) -> Json:
    """Error reports are not kept: the ids in 998/999 entries name nothing retrievable."""
    return Json([])


def schedules(emu: Emulator, req: Request) -> Json:
    return Json({})

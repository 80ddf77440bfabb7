"""JSON shapes of LINSTOR objects, as the controller's serializers emit them.

Every function returns plain dicts already stripped of empty fields (Jackson
``NON_EMPTY``); reading state only, so GETs stay cheap: one ``stat`` for allocated sizes,
a cached answer for in-use.
"""

from __future__ import annotations

from typing import Any

from emulator import addresses, names
from emulator import state as st
from emulator.core import Emulator
from emulator.routing import Pojo, omit_empty

LONG_MAX = 9223372036854775807
_NOT_CONNECTED_WARN = -9223372036854774806  # WARN_NOT_CONNECTED, no context bits


def node(emu: Emulator, n: st.Node) -> dict[str, Any]:
    layers = ["DRBD", "STORAGE"] if emu.drbd else ["STORAGE"]
    data: dict[str, Any] = {
        "name": n.name,
        "type": n.type,
        "flags": list(n.flags),
        "props": dict(n.props),
        "net_interfaces": [
            {
                "name": "default",
                "address": addresses.address_of(emu.state, n),
                "satellite_port": n.port,
                "satellite_encryption_type": n.encryption,
                "is_active": True,
                "uuid": n.uuid,
            }
        ],
        "connection_status": "ONLINE" if n.online else "OFFLINE",
        "uuid": n.uuid,
        "storage_providers": ["DISKLESS", "FILE", "FILE_THIN"],
        "resource_layers": layers,
        "unsupported_layers": {} if emu.drbd else {"DRBD": ["DRBD kernel module not loaded (emulator)"]},
        "platform": "LINUX",
    }
    return omit_empty(data)


def pool(emu: Emulator, p: st.Pool) -> dict[str, Any]:
    diskless = p.kind == "DISKLESS"
    node_ = emu.state.nodes.get(names.key(p.node))
    online = node_ is not None and node_.online
    data: dict[str, Any] = {
        "storage_pool_name": p.name,
        "node_name": p.node,
        "provider_kind": p.kind,
        "props": dict(p.props),
        "static_traits": {"SupportsSnapshots": "false"}
        if diskless
        else {"Provisioning": "Thin" if p.kind.endswith("_THIN") else "Fat", "SupportsSnapshots": "true"},
        "free_space_mgr_name": f"{p.node};{p.name}",
        "uuid": p.uuid,
        "supports_snapshots": not diskless,
        "external_locking": False,
    }
    if online:
        if diskless:
            data["free_capacity"] = data["total_capacity"] = LONG_MAX
        else:
            cap = emu.capacity(p)
            if cap is not None:
                data["total_capacity"], data["free_capacity"] = cap[0], cap[1]
    else:
        data["reports"] = [
            {
                "ret_code": _NOT_CONNECTED_WARN,
                "message": f"No active connection to satellite '{p.node}'",
                "obj_refs": {"Node": p.node},
            }
        ]
    return omit_empty(data)


def select_filter(flt: dict[str, Any]) -> dict[str, Any]:
    """The filter as the controller's JSON shows it: its serializer never writes the diskless pools."""
    data = {k: v for k, v in flt.items() if k != "storage_pool_diskless_list"}
    data.setdefault("place_count", 2)
    if data.get("storage_pool") and not data.get("storage_pool_list"):
        data["storage_pool_list"] = [data["storage_pool"]]
    data.setdefault("diskless_on_remaining", False)
    return omit_empty(data)


def resource_group(emu: Emulator, g: st.ResourceGroup) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": g.name,
        "description": g.description,
        "props": dict(g.props),
        "select_filter": select_filter(g.select_filter),
        "uuid": g.uuid,
    }
    if g.peer_slots is not None:
        data["peer_slots"] = g.peer_slots
    return omit_empty(data)


def volume_group(vg: st.VolumeGroup) -> dict[str, Any]:
    return omit_empty(
        {"volume_number": vg.number, "props": dict(vg.props), "flags": list(vg.flags), "uuid": vg.uuid}
    )


def _rd_layer_data(emu: Emulator, rd: st.ResourceDefinition) -> list[dict[str, Any]]:
    stack = rd.layer_stack or _default_stack(emu, rd)
    out: list[dict[str, Any]] = []
    for layer in stack:
        if layer == "DRBD":
            out.append(
                {
                    "type": "DRBD",
                    "data": {
                        "resource_name_suffix": "",
                        "peer_slots": rd.peer_slots,
                        "al_stripes": 1,
                        "al_stripe_size_kib": 32,
                        "port": rd.port,
                        "transport_type": "IP",
                        "secret": rd.secret,
                        "down": False,
                    },
                }
            )
        else:
            out.append({"type": layer})
    return out


def _default_stack(emu: Emulator, rd: st.ResourceDefinition) -> list[str]:
    rg = emu.rg_of(rd)
    stack = (rg.select_filter.get("layer_stack") if rg else None) or ["DRBD", "STORAGE"]
    stack = [s.upper() for s in stack]
    if not emu.drbd and "DRBD" in stack:
        return ["STORAGE"]
    return stack


def uses_drbd(emu: Emulator, rd: st.ResourceDefinition) -> bool:
    return emu.drbd and "DRBD" in (rd.layer_stack or _default_stack(emu, rd))


def volume_definition(emu: Emulator, rd: st.ResourceDefinition, vd: st.VolumeDefinition) -> dict[str, Any]:
    layer: list[dict[str, Any]] = []
    if uses_drbd(emu, rd):
        layer.append(
            {
                "type": "DRBD",
                "data": {"resource_name_suffix": "", "volume_number": vd.number, "minor_number": vd.minor},
            }
        )
    layer.append({"type": "STORAGE"})
    return omit_empty(
        {
            "volume_number": vd.number,
            "size_kib": vd.size_kib,
            "props": dict(vd.props),
            "flags": list(vd.flags),
            "layer_data": layer,
            "uuid": vd.uuid,
        }
    )


def resource_definition(emu: Emulator, rd: st.ResourceDefinition, with_vds: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": rd.name,
        "external_name": rd.external_name,
        "props": dict(rd.props),
        "flags": list(rd.flags),
        "layer_data": _rd_layer_data(emu, rd),
        "uuid": rd.uuid,
        "resource_group_name": rd.resource_group,
    }
    if with_vds:
        data["volume_definitions"] = [
            volume_definition(emu, rd, vd)
            for vd in sorted(rd.volume_definitions.values(), key=lambda v: v.number)
        ]
    return omit_empty(data)


def _rsc_flags(rsc: st.Resource) -> list[str]:
    return list(rsc.flags)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """Top-level NON_EMPTY for the hot list paths, whose nested parts are built clean."""
    return {k: v for k, v in data.items() if not (v is None or v == "" or v == [] or v == {})}


def _storage_volume(
    emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, vd: st.VolumeDefinition
) -> dict:
    if rsc.diskless:
        return {"volume_number": vd.number, "allocated_size_kib": 0, "usable_size_kib": vd.size_kib}
    data: dict[str, Any] = {"volume_number": vd.number}
    dev = emu.backing_device(vd) if emu.drbd else emu.device_path(vd)
    if dev:
        data["device_path"] = dev
    data["allocated_size_kib"] = emu.allocated_kib(vd)
    data["usable_size_kib"] = vd.size_kib
    return data


def _vds_of(rd: st.ResourceDefinition, rsc: st.Resource) -> list[st.VolumeDefinition]:
    out = []
    for key_ in sorted(rsc.volumes, key=int):
        vd = rd.volume_definitions.get(key_)
        if vd is not None:
            out.append(vd)
    return out


def _layer_object(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource) -> dict[str, Any]:
    vds = _vds_of(rd, rsc)
    storage = {
        "resource_name_suffix": "",
        "type": "STORAGE",
        "storage": {"storage_volumes": [_storage_volume(emu, rd, rsc, vd) for vd in vds]},
    }
    if not uses_drbd(emu, rd):
        return storage
    node_ = emu.state.nodes.get(names.key(rsc.node))
    online = node_ is not None and node_.online
    drbd_volumes = []
    for vd in vds:
        vol: dict[str, Any] = {
            "drbd_volume_definition": {
                "resource_name_suffix": "",
                "volume_number": vd.number,
                "minor_number": vd.minor,
            },
            "device_path": emu.device_path(vd),
            "allocated_size_kib": 0 if rsc.diskless else emu.allocated_kib(vd),
            "usable_size_kib": vd.size_kib,
        }
        if not rsc.diskless:
            backing = emu.backing_device(vd)
            if backing:
                vol["backing_device"] = backing
            vol["meta_disk"] = "internal"
        disk_state = _disk_state(emu, rd, rsc, online)
        if disk_state:
            vol["disk_state"] = disk_state
        drbd_volumes.append(vol)
    out: dict[str, Any] = {"type": "DRBD", "resource_name_suffix": ""}
    if not rsc.diskless:
        out["children"] = [storage]
    out["drbd"] = {
        "drbd_resource_definition": _rd_layer_data(emu, rd)[0]["data"],
        "node_id": rsc.node_id,
        "tcp_ports": [rsc.tcp_port],
        "peer_slots": rd.peer_slots,
        "al_stripes": 1,
        "al_size": 32,
        "flags": ["INITIALIZED"],
        "drbd_volumes": drbd_volumes,
        "promotion_score": 10102 if online else 0,
        "may_promote": online,
    }
    return out


def resource(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": rd.name,
        "node_name": rsc.node,
        "props": dict(rsc.props),
        "flags": _rsc_flags(rsc),
        "layer_object": _layer_object(emu, rd, rsc),
        "uuid": rsc.uuid,
        "create_timestamp": rsc.create_ts,
    }
    out = _compact(data)
    node_ = emu.state.nodes.get(names.key(rsc.node))
    if node_ is not None and node_.online:
        in_use = emu.in_use_reported(rd, rsc)
        out["state"] = Pojo({"in_use": in_use}) if in_use is not None else Pojo()
    return out


def volume(
    emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, vd: st.VolumeDefinition
) -> dict[str, Any]:
    vol = rsc.volumes[str(vd.number)]
    diskless = rsc.diskless
    drbd = uses_drbd(emu, rd)
    node_ = emu.state.nodes.get(names.key(rsc.node))
    online = node_ is not None and node_.online
    storage_data = _storage_volume(emu, rd, rsc, vd)
    layers: list[dict[str, Any]] = []
    if drbd:
        drbd_data: dict[str, Any] = {
            "drbd_volume_definition": {
                "resource_name_suffix": "",
                "volume_number": vd.number,
                "minor_number": vd.minor,
            },
            "device_path": emu.device_path(vd),
            "allocated_size_kib": 0 if diskless else emu.allocated_kib(vd),
            "usable_size_kib": vd.size_kib,
            "disk_state": _disk_state(emu, rd, rsc, online) or "DUnknown",
        }
        if not diskless:
            backing = emu.backing_device(vd)
            if backing:
                drbd_data["backing_device"] = backing
            drbd_data["meta_disk"] = "internal"
        layers.append({"type": "DRBD", "data": drbd_data})
    layers.append({"type": "STORAGE", "data": storage_data})
    data: dict[str, Any] = {
        "volume_number": vd.number,
        "storage_pool_name": vol.pool,
        "provider_kind": "DISKLESS" if diskless else _pool_kind(emu, rsc.node, vol.pool),
        "device_path": emu.device_path(vd) if (drbd or not diskless) else None,
        "allocated_size_kib": 0 if diskless else emu.allocated_kib(vd),
        "uuid": vol.uuid,
        "layer_data_list": layers,
    }
    disk_state = _disk_state(emu, rd, rsc, online) if drbd else None
    if disk_state:
        data["state"] = {"disk_state": disk_state}
    return _compact(data)


def _disk_state(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource, online: bool) -> str | None:
    """DRBD's disk state as the satellite reports it; None when unknown (offline, failed deployment)."""
    if not online or emu.disks.is_failed(rd.name, rsc.node):
        return None
    if rsc.diskless:
        return "Diskless"
    return emu.disks.state(rd.name, rsc.node, online)


def _pool_kind(emu: Emulator, node_name: str, pool_name: str) -> str:
    p = emu.state.pools.get(names.key(node_name), {}).get(names.key(pool_name))
    return p.kind if p else "FILE_THIN"


def resource_with_volumes(emu: Emulator, rd: st.ResourceDefinition, rsc: st.Resource) -> dict[str, Any]:
    data = resource(emu, rd, rsc)
    data["volumes"] = [volume(emu, rd, rsc, vd) for vd in _vds_of(rd, rsc)]
    return data


def snapshot(emu: Emulator, rd: st.ResourceDefinition, snap: st.Snapshot) -> dict[str, Any]:
    vols = sorted(snap.volumes.values(), key=lambda v: v.number)
    merged = {**snap.rd_props, **snap.props}
    data: dict[str, Any] = {
        "name": snap.name,
        "resource_name": rd.name,
        "nodes": list(snap.nodes),
        "props": merged,
        "flags": list(snap.flags),
        "volume_definitions": [
            {"volume_number": v.number, "size_kib": v.size_kib, "volume_definition_props": dict(v.props)}
            for v in vols
        ],
        "uuid": snap.uuid,
        "snapshots": [
            {
                "snapshot_name": snap.name,
                "node_name": n,
                "create_timestamp": snap.create_ts,
                "flags": list(snap.flags),
                "uuid": snap.node_uuids.get(names.key(n), snap.uuid),
                "snapshot_volumes": [{"uuid": v.uuid, "vlm_nr": v.number} for v in vols],
            }
            for n in snap.nodes
        ],
    }
    if emu.config.controller.splits_snapshot_props():
        data["snapshot_definition_props"] = dict(snap.props)
        data["resource_definition_props"] = dict(snap.rd_props)
    return omit_empty(data)

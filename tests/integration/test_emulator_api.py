"""The official python-linstor client drives the emulator through a whole volume lifecycle.

python-linstor is LINBIT's own client and an independent second opinion on the emulator's
wire format: if it can list, spawn, place, attach, resize, snapshot, restore, clone and
delete, and the data written through the reported device path reads back at every step,
the emulator speaks LINSTOR well enough for the plugin's tests to mean something.
"""

from __future__ import annotations

import os
from pathlib import Path

import linstor
import pytest
import requests

from plugin.linstor.retcodes import MASK_ERROR
from plugin.linstor.retcodes import MASK_SEVERITY_AND_CODE as MASK
from testkit.waiting import wait_until
from tests.blockio import read_at, size_bytes, write_at

MIB_KIB = 1024


def _ok(replies: list) -> list:
    """python-linstor returns errors instead of raising them; fail loudly on any."""
    errors = [r for r in replies if r.is_error()]
    assert not errors, [(r.ret_code, r.message) for r in errors]
    return replies


def _post(url: str, body: object) -> requests.Response:
    return requests.post(url, json=body, timeout=30)


def _local_node(lin: linstor.Linstor) -> str:
    nodes = lin.node_list_raise().nodes
    local = [n.name for n in nodes if n.type.upper() == "COMBINED"]
    assert len(local) == 1
    return local[0]


def _device_on(lin: linstor.Linstor, rsc: str, node: str) -> str:
    resources = lin.volume_list_raise(filter_by_nodes=[node], filter_by_resources=[rsc]).resources
    assert len(resources) == 1, f"{rsc} is not on {node}"
    path = resources[0].volumes[0].device_path
    assert path and Path(path).is_block_device(), path
    return path


def test_full_lifecycle_with_python_linstor(emulator) -> None:  # type: ignore[no-untyped-def]
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        node_names = sorted(n.name for n in lin.node_list_raise().nodes)
        local = _local_node(lin)
        assert set(node_names) == {local, "node-b", "node-c"}
        pools = lin.storage_pool_list_raise().storage_pools
        thin = [p for p in pools if p.name == "DfltStorPool"]
        assert {p.node_name for p in thin} == set(node_names)
        assert all(p.provider_kind == "FILE_THIN" and p.free_space.total_capacity > 0 for p in thin)

        _ok(lin.resource_group_create("sc-two", place_count=2, storage_pool=["DfltStorPool"]))
        _ok(lin.resource_group_spawn("sc-two", "vol-a", [64 * MIB_KIB]))
        placed = lin.resource_list_raise(filter_by_resources=["vol-a"]).resources
        # Two diskful replicas and, as a controller adds it, a diskless tie-breaker on the third node.
        assert len([r for r in placed if "DISKLESS" not in r.flags]) == 2
        assert [r.flags for r in placed if "DISKLESS" in r.flags] == [
            ["DISKLESS", "DRBD_DISKLESS", "TIE_BREAKER"]
        ]

        # Attach on this host (diskless unless a replica landed here) and use real data.
        _ok(lin.resource_make_available(local, "vol-a"))
        device = _device_on(lin, "vol-a", local)
        before = os.urandom(256 * 1024)
        write_at(device, 1024 * 1024, before)
        assert read_at(device, 1024 * 1024, len(before)) == before
        assert size_bytes(device) == 64 * 1024 * 1024

        # Grow: visible on the device when the call returns.
        _ok(lin.volume_dfn_modify("vol-a", 0, size=128 * MIB_KIB))
        assert size_bytes(device) == 128 * 1024 * 1024

        # Snapshot, then change the live volume: the snapshot keeps the old bytes.
        _ok(lin.snapshot_create(None, "vol-a", "snap1"))
        snaps = lin.snapshot_dfn_list_raise().snapshots
        assert [(s.rsc_name, s.snapshot_name) for s in snaps] == [("vol-a", "snap1")]
        assert "SUCCESSFUL" in snaps[0].flags
        after = os.urandom(256 * 1024)
        write_at(device, 1024 * 1024, after)

        # Restore into a new definition, attach it here, read the snapshot's data.
        _ok(lin.resource_dfn_create("vol-r", resource_group="sc-two"))
        _ok(lin.snapshot_volume_definition_restore("vol-a", "snap1", "vol-r"))
        _ok(lin.snapshot_resource_restore([], "vol-a", "snap1", "vol-r"))
        _ok(lin.resource_make_available(local, "vol-r"))
        restored = _device_on(lin, "vol-r", local)
        assert restored != device
        assert read_at(restored, 1024 * 1024, len(before)) == before
        assert size_bytes(restored) == 128 * 1024 * 1024

        # Clone the live volume: the clone carries its current data.
        started = lin.resource_dfn_clone("vol-a", "vol-c")
        assert started is not None and started.clone_name == "vol-c"
        assert lin.resource_dfn_clone_wait_complete("vol-a", "vol-c", wait_interval=0.2, timeout=60)
        _ok(lin.resource_make_available(local, "vol-c"))
        cloned = _device_on(lin, "vol-c", local)
        assert read_at(cloned, 1024 * 1024, len(after)) == after

        # Delete everything, diskless attachments first, then snapshots and definitions.
        for rsc in ("vol-a", "vol-r", "vol-c"):
            for r in lin.resource_list_raise(filter_by_resources=[rsc]).resources:
                if "DISKLESS" in r.flags:
                    _ok(lin.resource_delete(r.node_name, rsc))
        _ok(lin.snapshot_delete("vol-a", "snap1"))
        for rsc in ("vol-a", "vol-r", "vol-c"):
            _ok(lin.resource_dfn_delete(rsc))
        _ok(lin.resource_group_delete("sc-two"))
        assert lin.resource_dfn_list_raise().resource_definitions == []
        for path in (device, restored, cloned):
            assert not Path(path).exists()
    pools_dir = emulator.state_dir / "pools"
    assert not [p for p in pools_dir.rglob("*.img")], "backing files were left behind"


def test_connect_error_list_and_basic_calls(emulator) -> None:  # type: ignore[no-untyped-def]
    """Checklist 5.8 (1): connect, create, place one replica, list volumes, delete; errors are lists."""
    with linstor.Linstor(f"linstor://127.0.0.1:{emulator.port}") as lin:
        _ok(lin.resource_dfn_create("one"))
        _ok(lin.volume_dfn_create("one", 8 * MIB_KIB))
        _ok(lin.resource_auto_place("one", 1))
        vols = lin.volume_list_raise(filter_by_resources=["one"]).resources
        assert len(vols) == 1 and vols[0].volumes[0].device_path
        dup = lin.resource_dfn_create("one")
        assert dup[0].is_error()
        assert dup[0].ret_code & MASK == 0xC0000000000001F5
        _ok(lin.resource_dfn_delete("one"))


def test_restart_keeps_data_and_devices(emulator) -> None:  # type: ignore[no-untyped-def]
    base = emulator.url + "/v1"
    local = next(
        n["name"] for n in requests.get(base + "/nodes", timeout=5).json() if n["type"] == "COMBINED"
    )
    assert (
        requests.post(
            base + "/resource-definitions", json={"resource_definition": {"name": "keep"}}
        ).status_code
        == 201
    )
    r = requests.post(
        base + "/resource-definitions/keep/volume-definitions",
        json={"volume_definition": {"size_kib": 16384}},
    )
    assert r.status_code == 200
    r = requests.post(base + f"/resource-definitions/keep/resources/{local}", json={"resource": {}})
    assert r.status_code == 201, r.text
    vol = requests.get(base + f"/resource-definitions/keep/resources/{local}/volumes/0", timeout=5).json()
    device = vol["device_path"]
    payload = os.urandom(64 * 1024)
    write_at(device, 4096, payload)
    # A delete on an offline node stays pending; a restart reconnects the virtual satellites.
    assert _post(base + "/resource-definitions/keep/resources/node-b", {"resource": {}}).status_code == 201
    assert emulator.control("nodes/node-b/offline").status_code == 200
    assert (
        requests.delete(base + "/resource-definitions/keep/resources/node-b", timeout=30).status_code == 200
    )

    emulator.restart()

    assert requests.get(base + "/nodes/node-b", timeout=5).json()["connection_status"] == "ONLINE"
    assert requests.get(base + "/resource-definitions/keep/resources/node-b", timeout=5).status_code == 404

    vol2 = requests.get(base + f"/resource-definitions/keep/resources/{local}/volumes/0", timeout=5).json()
    assert vol2["device_path"] == device
    assert vol2["uuid"] == vol["uuid"]
    assert Path(device).is_block_device()
    assert read_at(device, 4096, len(payload)) == payload


@pytest.mark.parametrize("strict", [False, True], ids=["detected-in-use", "strict-in-use"])
def test_storage_only_mode_reports_loop_devices(root_loop, emulator_factory, strict: bool) -> None:  # type: ignore[no-untyped-def]
    flags = ("--storage-only", "--strict-in-use") if strict else ("--storage-only",)
    emu = emulator_factory(extra_args=flags, name="strict" if strict else "storage-only")
    base = emu.url + "/v1"
    nodes = requests.get(base + "/nodes", timeout=5).json()
    assert nodes[0]["resource_layers"] == ["STORAGE"]
    assert "DRBD" in nodes[0]["unsupported_layers"]
    local = nodes[0]["name"]
    requests.post(base + "/resource-definitions", json={"resource_definition": {"name": "plain"}})
    requests.post(
        base + "/resource-definitions/plain/volume-definitions",
        json={"volume_definition": {"size_kib": 8192}},
    )
    # The default layer stack contains DRBD, which a DRBD-less satellite refuses (988).
    r = requests.post(base + f"/resource-definitions/plain/resources/{local}", json={"resource": {}})
    assert r.status_code == 500 and r.json()[0]["ret_code"] & MASK == MASK_ERROR | 988
    r = requests.post(
        base + f"/resource-definitions/plain/resources/{local}",
        json={"resource": {}, "layer_list": ["STORAGE"]},
    )
    assert r.status_code == 201, r.text
    vol = requests.get(base + f"/resource-definitions/plain/resources/{local}/volumes/0", timeout=5).json()
    assert vol["device_path"].startswith("/dev/loop")
    assert [ld["type"] for ld in vol["layer_data_list"]] == ["STORAGE"]
    assert "state" not in vol
    rsc = requests.get(base + f"/resource-definitions/plain/resources/{local}", timeout=5).json()
    assert rsc["layer_object"]["type"] == "STORAGE"
    # STORAGE-only: the real controller knows no in_use ("state": {}); by default the emulator detects it.
    assert rsc["state"] == ({} if strict else {"in_use": False})
    rsc_url = base + f"/resource-definitions/plain/resources/{local}"
    fd = os.open(vol["device_path"], os.O_RDWR)
    try:
        if not strict:
            # The controller learns of the open from the satellite's report, a moment later.
            wait_until(
                lambda: requests.get(rsc_url, timeout=5).json()["state"].get("in_use"),
                timeout=30,
                interval=0.1,
                what="the report of the open",
            )
        r = requests.delete(base + f"/resource-definitions/plain/resources/{local}", timeout=30)
        if strict:
            assert r.status_code == 500  # the device cannot be released under an opener
        else:
            assert r.status_code == 500 and r.json()[0]["ret_code"] & MASK == MASK_ERROR | 997
        # A refused delete changes nothing.
        assert (
            requests.get(base + f"/resource-definitions/plain/resources/{local}", timeout=5).status_code
            == 200
        )
    finally:
        os.close(fd)
    if not strict:  # and of the close
        wait_until(
            lambda: not requests.get(rsc_url, timeout=5).json()["state"].get("in_use"),
            timeout=30,
            interval=0.1,
            what="the report of the close",
        )
    r = requests.delete(base + f"/resource-definitions/plain/resources/{local}", timeout=30)
    assert r.status_code == 200 and r.json()[-1]["ret_code"] == 53739522
    assert requests.get(base + f"/resource-definitions/plain/resources/{local}", timeout=5).status_code == 404
    assert not list((emu.state_dir / "pools").rglob("plain_*.img"))


def test_concurrent_clients_are_serialised(emulator_factory) -> None:  # type: ignore[no-untyped-def]
    """Many clients at once: every create lands exactly once, lists stay whole and sorted."""
    from concurrent.futures import ThreadPoolExecutor

    base = emulator_factory().url + "/v1"

    def work(i: int) -> list[int]:
        s = requests.Session()
        name = f"c{i:03d}"
        codes = [
            s.post(base + "/resource-definitions", json={"resource_definition": {"name": name}}).status_code
        ]
        codes.append(
            s.post(base + "/resource-definitions", json={"resource_definition": {"name": name}}).status_code
        )
        vd = {"volume_definition": {"size_kib": 4096}}
        codes.append(s.post(base + f"/resource-definitions/{name}/volume-definitions", json=vd).status_code)
        listed = s.get(base + "/resource-definitions").json()
        assert [r["name"] for r in listed] == sorted((r["name"] for r in listed), key=str.upper)
        return codes

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(work, range(48)))
    assert all(codes == [201, 500, 200] for codes in results), results
    listed = requests.get(
        base + "/resource-definitions", params={"with_volume_definitions": "true"}, timeout=10
    ).json()
    assert len(listed) == 48
    minors = [r["volume_definitions"][0]["layer_data"][0]["data"]["minor_number"] for r in listed]
    assert len(set(minors)) == 48 and min(minors) >= 1000

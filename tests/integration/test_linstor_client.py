"""The plugin's LINSTOR client against the emulator: real answers, real ret codes, real outages."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from plugin.config import Config
from plugin.errors import AlreadyExists, InUse, InvalidArgument, NoSpace, NotFound, Unavailable
from plugin.linstor import retcodes as rc
from plugin.linstor.client import LinstorClient
from testkit.waiting import wait_until
from tests.conftest import EmulatorProcess, free_port

pytestmark = pytest.mark.root


def client_for(*urls: str) -> LinstorClient:
    return LinstorClient(Config(controllers=urls, connect_timeout=2.0, read_timeout=60.0, config_file=None))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def spawn_one(client: LinstorClient, rg: str, rd: str, size_kib: int = 8192, **kwargs: Any) -> None:
    client.create_resource_group(rg, {"place_count": 1})
    client.spawn(rg, rd, size_kib, **kwargs)


def local_node(client: LinstorClient) -> str:
    return next(
        n.name
        for n in client.list_nodes()
        if n.type in ("COMBINED", "SATELLITE") and not n.name.startswith("node-")
    )


def test_version_nodes_and_pools(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    version = client.controller_version()
    assert version.rest_api_version.split(".")[0] == "1"
    names = {n.name for n in client.list_nodes()}
    assert {"node-b", "node-c"} <= names
    assert client.get_node("node-b").name == "node-b"
    pools = client.list_storage_pools(nodes=["node-b"])
    assert {p.name for p in pools} >= {"DfltStorPool", "DfltDisklessStorPool"}
    assert all(p.node == "node-b" for p in pools)
    assert {p.name for p in client.node_storage_pools("node-c")} >= {"DfltStorPool"}


def test_spawn_then_read_everything_back(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    rg, rd = unique("rg"), unique("rd")
    spawn_one(client, rg, rd, definition_props={"Aux/x": "1", "FileSystem/Type": "ext4"})
    [listed] = client.list_resource_definitions([rd])
    assert listed.props["Aux/x"] == "1"
    assert listed.resource_group == rg
    assert listed.volume_definitions[0].size_kib == 8192
    [res] = client.view_resources([rd])
    volume = client.get_volume(rd, res.node)
    assert volume.device_path
    client.resize_volume_definition(rd, 16384)
    assert client.get_volume_definition(rd).size_kib == 16384
    client.modify_resource_definition(rd, {"Aux/y": "2"}, ["Aux/x"])
    props = client.get_resource_definition(rd).props
    assert props["Aux/y"] == "2" and "Aux/x" not in props
    client.delete_resource_definition(rd)
    assert client.list_resource_definitions([rd]) == []


def test_typed_errors_from_real_answers(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    rg, rd = unique("rg"), unique("rd")
    with pytest.raises(NotFound) as missing:
        client.get_resource_definition(rd)
    assert missing.value.details["code"] == rc.FAIL_NOT_FOUND_RSC_DFN
    spawn_one(client, rg, rd)
    with pytest.raises(AlreadyExists) as exists:
        client.create_resource_group(rg, {"place_count": 1})
    assert exists.value.details["code"] == rc.FAIL_EXISTS_RSC_GRP
    with pytest.raises(AlreadyExists) as exists:
        client.spawn(rg, rd, 4096)
    assert exists.value.details["code"] == rc.FAIL_EXISTS_RSC_DFN
    with pytest.raises(InvalidArgument):
        client.create_resource_definition("9-invalid", rg)
    # five diskful replicas on three nodes: nothing can be placed and nothing is left
    with pytest.raises(NoSpace) as nospace:
        client.spawn(rg, unique("rd"), 4096, select_filter={"place_count": 5})
    assert nospace.value.details["code"] == rc.FAIL_NOT_ENOUGH_NODES
    # deletes of missing objects succeed with a warning
    entries = client.delete_resource_definition(unique("gone"))
    assert rc.has_warning(entries, rc.WARN_NOT_FOUND)


def test_in_use_and_node_offline(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    rg, rd = unique("rg"), unique("rd")
    spawn_one(client, rg, rd, select_filter={"node_name_list": ["node-b"]})
    assert emulator.control(f"resources/{rd}/node-b/in_use", {"in_use": True}).ok
    with pytest.raises(InUse) as busy:
        client.delete_resource_definition(rd)
    assert busy.value.details["code"] == rc.FAIL_IN_USE
    assert emulator.control(f"resources/{rd}/node-b/in_use", {"in_use": False}).ok
    assert emulator.control("nodes/node-b/offline").ok
    try:
        # as the controller: offline diskful nodes are skipped, and with none left nothing is found
        with pytest.raises(NotFound) as nothing:
            client.create_snapshots([(rd, "snap1")])
        assert nothing.value.details["code"] == rc.FAIL_NOT_FOUND_RSC
        # the resource is already there: make-available on its (offline) node changes nothing
        assert isinstance(client.make_available(rd, "node-b"), list)
    finally:
        emulator.control("nodes/node-b/online")


def test_snapshot_restore_and_clone_calls(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    rg, rd = unique("rg"), unique("rd")
    spawn_one(client, rg, rd)
    client.create_snapshot(rd, "s1", {"Aux/note": "x"})
    client.create_snapshots([(rd, "s2")])
    assert {s.name for s in client.list_snapshots(rd)} == {"s1", "s2"}
    assert {s.name for s in client.view_snapshots([rd])} == {"s1", "s2"}
    snap = client.get_snapshot(rd, "s1")
    assert "SUCCESSFUL" in snap.flags
    target = unique("restored")
    client.create_resource_definition(target, rg)
    client.restore_volume_definition(rd, "s1", target)
    client.restore_resource(rd, "s1", target)
    assert client.view_resources([target])
    with pytest.raises(AlreadyExists) as again:
        client.restore_resource(rd, "s1", target)
    assert again.value.details["code"] == rc.FAIL_EXISTS_RSC
    client.delete_snapshot(rd, "s2")
    assert {s.name for s in client.list_snapshots(rd)} == {"s1"}


def test_failover_to_the_emulator_when_first_controller_is_down(emulator: EmulatorProcess) -> None:
    client = client_for(f"http://127.0.0.1:{free_port()}", emulator.url)
    assert client.controller_version().version
    assert client.current_controller == emulator.url


def test_outage_fails_fast_then_recovers(emulator: EmulatorProcess) -> None:
    client = client_for(emulator.url)
    client.controller_version()
    emulator.outage(3)
    started = time.monotonic()
    with pytest.raises(Unavailable):
        client.list_nodes()
    assert time.monotonic() - started < 2.0  # fast: refused connections, short backoff
    wait_until(
        client.list_nodes, timeout=15, interval=0.2, what="the emulator's return", ignore=(Unavailable,)
    )

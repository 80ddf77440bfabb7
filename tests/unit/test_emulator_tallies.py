"""DRBD minors, TCP ports, reserved room and placement from running totals, as a full count gives them.

Requests go through the server's dispatcher in process (reservations, saves and all) over the
in-memory fake storage; after each one the emulator's answers are checked against a count over
every definition, which is how they were computed before the totals kept them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator import names
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import Config
from emulator.core import Emulator
from emulator.server import EmulatorServer
from emulator.tallies import Tallies
from tests.unit.test_emulator_core import FakeStorage

MINORS = (3000, 3003)
PORTS = (7100, 7102)


def make(
    tmp_path: Path, minors: tuple[int, int] = MINORS, ports: tuple[int, int] = PORTS
) -> tuple[Emulator, EmulatorServer]:
    cfg = Config(
        state_dir=tmp_path / "state",
        dev_dir=tmp_path / "dev",
        local_node="here",
        virtual_nodes=("vb", "vc"),
        in_use_report_seconds=0,
        minor_range=minors,
        tcp_port_range=ports,
    )
    emu = Emulator(cfg, FakeStorage(tmp_path / "pools"))
    emu.bootstrap()
    return emu, EmulatorServer(emu, "127.0.0.1", 0, None, metrics=False)


def send(server: EmulatorServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    return server.dispatch(method, path, "", json.dumps(body).encode() if body is not None else b"")


def spawn(server: EmulatorServer, name: str, sizes: tuple[int, ...] = (1024,), node: str = "vb") -> Any:
    return send(
        server,
        "POST",
        "/v1/resource-groups/DfltRscGrp/spawn",
        {
            "resource_definition_name": name,
            "volume_sizes": list(sizes),
            "select_filter": {"place_count": 1, "node_name_list": [node]},
        },
    )


def counted(emu: Emulator) -> dict[str, Any]:
    """Every answer, counted over every definition as the emulator used to."""
    rds = emu.state.resource_definitions.values()
    minors = {vd.minor for rd in rds for vd in rd.volume_definitions.values()}
    free_minors = [m for m in range(MINORS[0], MINORS[1] + 1) if m not in minors]
    ports: dict[str, int | None] = {}
    for nk in emu.state.nodes:
        used = {rd.resources[nk].tcp_port for rd in rds if nk in rd.resources}
        free = [p for p in range(PORTS[0], PORTS[1] + 1) if p not in used]
        ports[nk] = free[0] if free else None
    reserved: dict[tuple[str, str], int] = {}
    on_node: dict[str, frozenset[str]] = {}
    for rd in rds:
        for nk, rsc in rd.resources.items():
            on_node[nk] = on_node.get(nk, frozenset()) | {names.key(rd.name)}
            if rsc.diskless:
                continue
            for vol in rsc.volumes.values():
                key = (nk, names.key(vol.pool))
                reserved[key] = reserved.get(key, 0) + rd.volume_definitions[str(vol.number)].size_kib
        for snap in rd.snapshots.values():
            for nk, pool in snap.pools.items():
                key = (nk, names.key(pool))
                reserved[key] = reserved.get(key, 0) + sum(sv.allocated_kib for sv in snap.volumes.values())
    return {
        "minor": free_minors[0] if free_minors else None,
        "ports": ports,
        "reserved": {k: v for k, v in reserved.items() if v},
        "on_node": on_node,
    }


def answered(emu: Emulator, tallies: Tallies, live: set[str] | None) -> dict[str, Any]:
    return {
        "minor": tallies.free_minor(emu.state, live),
        "ports": {nk: tallies.free_port(emu.state, live, nk) for nk in emu.state.nodes},
        "reserved": tallies.reserved(emu.state, live),
        "on_node": {nk: frozenset(keys) for nk, keys in tallies.on_nodes(emu.state, live).items()},
    }


def agree(emu: Emulator) -> None:
    """The kept totals (nothing in flight), a fresh count and every definition live all agree."""
    want = counted(emu)
    assert answered(emu, emu.tallies, set()) == want
    assert answered(emu, emu.tallies, None) == want
    fresh = Tallies(MINORS, PORTS)
    fresh.settle(emu.state, None)
    assert answered(emu, fresh, set()) == want


def test_numbers_are_the_lowest_free_freed_ones_come_back_and_exhaustion_is_refused(tmp_path: Path) -> None:
    emu, server = make(tmp_path)
    assert spawn(server, "r1")[0] < 300 and spawn(server, "r2", node="vc")[0] < 300
    rd1, rd2 = (emu.state.resource_definitions[k] for k in ("R1", "R2"))
    assert (rd1.volume_definitions["0"].minor, rd1.resources["VB"].tcp_port) == (3000, 7100)
    assert (rd2.volume_definitions["0"].minor, rd2.resources["VC"].tcp_port) == (3001, 7100)  # per node
    agree(emu)

    # Two volumes of one definition in one request: two minors, though neither was saved yet.
    assert spawn(server, "r3", sizes=(1024, 2048))[0] < 300
    assert sorted(vd.minor for vd in emu.state.resource_definitions["R3"].volume_definitions.values()) == [
        3002,
        3003,
    ]
    agree(emu)
    status, answer = spawn(server, "r4")
    assert status >= 400 and rc.code_of(answer[0]["ret_code"]) == rc.FAIL_POOL_EXHAUSTED_MINOR_NR
    assert "R4" not in emu.state.resource_definitions
    agree(emu)

    assert send(server, "DELETE", "/v1/resource-definitions/r1")[0] < 300
    agree(emu)
    assert spawn(server, "r5")[0] < 300  # r1's minor and port, the lowest free, again
    rd5 = emu.state.resource_definitions["R5"]
    assert (rd5.volume_definitions["0"].minor, rd5.resources["VB"].tcp_port) == (3000, 7100)
    agree(emu)


def test_ports_run_out_per_node_with_the_controllers_refusal(tmp_path: Path) -> None:
    emu, server = make(tmp_path)
    for name in ("p1", "p2", "p3"):
        send(server, "POST", "/v1/resource-definitions", {"resource_definition": {"name": name}})
        send(server, "POST", f"/v1/resource-definitions/{name}/volume-definitions", {"volume_definition": {}})
    for name in ("p1", "p2", "p3"):
        status, _ = send(
            server, "POST", f"/v1/resource-definitions/{name}/resources", [{"resource": {"node_name": "vb"}}]
        )
        assert status < 300
    agree(emu)
    send(server, "POST", "/v1/resource-definitions", {"resource_definition": {"name": "p4"}})
    status, answer = send(
        server, "POST", "/v1/resource-definitions/p4/resources", [{"resource": {"node_name": "vb"}}]
    )
    assert status >= 400 and rc.code_of(answer[0]["ret_code"]) == rc.FAIL_POOL_EXHAUSTED_TCP_PORT
    assert "No free DRBD TCP port left on node" in answer[0]["message"]
    # Another node's ports are its own; a removed resource gives its port back.
    assert (
        send(server, "POST", "/v1/resource-definitions/p4/resources", [{"resource": {"node_name": "vc"}}])[0]
        < 300
    )
    assert send(server, "DELETE", "/v1/resource-definitions/p2/resources/vb")[0] < 300
    agree(emu)
    assert (
        send(server, "POST", "/v1/resource-definitions/p4/resources", [{"resource": {"node_name": "vb"}}])[0]
        < 300
    )
    assert emu.state.resource_definitions["P4"].resources["VB"].tcp_port == 7101
    agree(emu)


def test_a_wanted_minor_is_checked_against_every_definition(tmp_path: Path) -> None:
    emu, server = make(tmp_path)
    assert spawn(server, "w1")[0] < 300
    send(server, "POST", "/v1/resource-definitions", {"resource_definition": {"name": "w2"}})
    taken = {"volume_definition": {"size_kib": 1024}, "drbd_minor_number": 3000}
    status, answer = send(server, "POST", "/v1/resource-definitions/w2/volume-definitions", taken)
    assert status >= 400 and rc.code_of(answer[0]["ret_code"]) == rc.FAIL_INVLD_MINOR_NR
    free = {"volume_definition": {"size_kib": 1024}, "drbd_minor_number": 3002}
    assert send(server, "POST", "/v1/resource-definitions/w2/volume-definitions", free)[0] < 300
    assert emu.tallies.free_minor(emu.state, set()) == 3001
    agree(emu)


def test_changes_made_outside_requests_are_counted_too(tmp_path: Path) -> None:
    emu, server = make(tmp_path)
    for name in ("o1", "o2"):
        assert spawn(server, name)[0] < 300
    del emu.state.resource_definitions["O1"]  # as start-up or a test might, with no save named
    assert emu.next_minor() == 3000  # outside a request every definition counts live
    emu.persist(set())
    agree(emu)
    emu.reset()
    assert emu.next_minor() == 3000 and not emu.state.resource_definitions
    agree(emu)


def test_changed_keys_finds_unnamed_new_and_removed_definitions() -> None:
    known = {"A": 1, "B": 2, "C": 3}
    assert st.changed_keys({"A": 1, "B": 9, "C": 3}, known, {"B"}) == {"B"}
    assert st.changed_keys({"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}, known, set()) == {"D", "E"}
    assert st.changed_keys({"A": 1, "C": 3, "D": 4}, known, {"D"}) == {"B", "D"}
    assert st.changed_keys({"A": 1, "C": 3}, known, set()) == {"B"}


def test_saves_that_name_their_changes_load_back_as_the_state_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(st, "JOURNAL_MIN_BYTES", 0)  # the snapshot is rewritten every few saves
    emu, server = make(tmp_path, minors=(1000, 1100), ports=(7000, 7100))
    body = {"override_props": {"Aux/k": "v"}}
    for i in range(12):
        assert spawn(server, f"s{i}", node=("vb", "vc")[i % 2])[0] < 300
        if i % 3 == 2:
            assert send(server, "DELETE", f"/v1/resource-definitions/s{i - 1}")[0] < 300
            assert send(server, "PUT", f"/v1/resource-definitions/s{i - 2}", body)[0] < 300
        loaded = st.load(emu.config.state_dir)
        assert loaded is not None and loaded.to_json() == emu.state.to_json()

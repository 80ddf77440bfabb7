"""Emulator rules over an in-memory fake of the host storage (no root, no loop devices).

The fake keeps backing "files" in a dict and devices as strings, so these tests check the
controller logic alone: rollback on failure, the shared-device rule, in-use reporting,
persistence and fault rules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from emulator import api_rd, api_rg, api_rsc
from emulator import retcodes as rc
from emulator import state as st
from emulator.config import Config
from emulator.core import Emulator
from emulator.faults import Faults, error_ret_code
from emulator.routing import Request
from plugin.linstor.retcodes import MASK_SEVERITY_AND_CODE


class FakeStorage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[str, int] = {}
        self.attached: dict[str, str] = {}
        self.busy: set[str] = set()
        self.formatted: list[str] = []
        self.fail_create = False

    def pool_path(self, node: str, pool: str) -> Path:
        return self.root / node / pool

    def volume_path(self, node: str, pool: str, rd: str, vlm_nr: int) -> Path:
        return self.pool_path(node, pool) / f"{rd}_{vlm_nr:05d}.img"

    def snapshot_path(self, node: str, pool: str, rd: str, vlm_nr: int, snap: str) -> Path:
        return self.pool_path(node, pool) / f"{rd}_{vlm_nr:05d}_{snap}.img"

    def pool_capacity_kib(self, node: str, pool: str) -> tuple[int, int]:
        return 100 * 1024 * 1024, 90 * 1024 * 1024

    def create_volume(self, node: str, pool: str, rd: str, vlm_nr: int, size_kib: int) -> Path:
        if self.fail_create:
            raise OSError("disk on fire")
        path = self.volume_path(node, pool, rd, vlm_nr)
        self.files[str(path)] = size_kib
        return path

    def allocated_kib(self, backing: Path) -> int:
        return 0

    def attach(self, backing: Path, minor: int | None) -> str:
        self.attached[str(backing)] = f"/dev/fake{minor}"
        return self.attached[str(backing)]

    def detach(self, backing: Path, minor: int | None) -> None:
        if str(backing) in self.busy:
            raise OSError("busy")
        self.attached.pop(str(backing), None)

    def device_for(self, backing: Path, minor: int | None) -> str | None:
        return self.attached.get(str(backing))

    def loop_for(self, backing: Path) -> str | None:
        return "/dev/loop99" if str(backing) in self.attached else None

    def resize(self, backing: Path, size_kib: int) -> None:
        self.files[str(backing)] = size_kib

    def delete(self, backing: Path, minor: int | None) -> None:
        self.detach(backing, minor)
        self.files.pop(str(backing), None)

    def mkfs_if_blank(self, device: str, fs_type: str, mkfs_params: str = "") -> bool:
        self.formatted.append(f"{device}:{fs_type}:{mkfs_params}")
        return True

    def in_use(self, backing: Path, minor: int | None) -> bool:
        return str(backing) in self.busy

    def snapshot(self, backing: Path, dest: Path) -> None:
        self.files[str(dest)] = self.files[str(backing)]

    def copy_volume(self, src: Path, dest: Path) -> None:
        raise AssertionError("not used in these tests")

    def release_all(self, backings: Iterable[tuple[Path, int | None]]) -> None:
        for b, _ in backings:
            self.attached.pop(str(b), None)

    def sweep(self, keep_files: set[str], keep_minors: set[int]) -> list[str]:
        orphans = [f for f in self.files if f not in keep_files]
        for f in orphans:
            self.files.pop(f)
        return orphans


@pytest.fixture
def emu(tmp_path: Path) -> Emulator:
    cfg = Config(
        state_dir=tmp_path / "state",
        dev_dir=tmp_path / "dev",
        local_node="here",
        virtual_nodes=("vb", "vc"),
        in_use_report_seconds=0,  # these checks are about devices; the report lag has its own tests
    )
    e = Emulator(cfg, FakeStorage(tmp_path / "pools"))
    e.bootstrap()
    return e


def call(handler, emu: Emulator, params: dict[str, str], body: object = None):  # type: ignore[no-untyped-def]
    return handler(
        emu, Request("POST", "/", params, {}, json.dumps(body).encode() if body is not None else b"")
    )


def test_spawn_rolls_back_when_placement_fails(emu: Emulator) -> None:
    fake: FakeStorage = emu.storage  # type: ignore[assignment]
    fake.fail_create = True
    body = {"resource_definition_name": "r1", "volume_sizes": [1024], "select_filter": {"place_count": 1}}
    with pytest.raises(rc.ApiFailure) as exc:
        call(api_rg.spawn, emu, {"rg": "DfltRscGrp"}, body)
    assert exc.value.entries[0].code == rc.FAIL_UNKNOWN_ERROR
    assert "R1" not in emu.state.resource_definitions
    assert fake.files == {}
    fake.fail_create = False
    entries = call(api_rg.spawn, emu, {"rg": "DfltRscGrp"}, body)
    assert entries[-1].message.endswith("ready")
    assert len(fake.files) == 1


def test_device_exists_only_while_a_local_or_diskless_resource_needs_it(emu: Emulator) -> None:
    fake: FakeStorage = emu.storage  # type: ignore[assignment]
    call(
        api_rd.create_rd,
        emu,
        {},
        {"resource_definition": {"name": "r2", "props": {"FileSystem/Type": "xfs"}}},
    )
    call(api_rd.create_vd, emu, {"rd": "r2"}, {"volume_definition": {"size_kib": 2048}})
    call(api_rsc.create_rsc, emu, {"rd": "r2", "node": "vb"}, {"resource": {}})
    # Formatted at creation through a temporary device, which is gone again afterwards.
    assert fake.formatted == ["/dev/fake1000:xfs:"]
    assert fake.attached == {}
    call(api_rsc.make_available, emu, {"rd": "r2", "node": "vc"}, {})
    assert emu.state.resource_definitions["R2"].resources["VC"].diskless
    assert list(fake.attached.values()) == ["/dev/fake1000"]
    fake.busy.add(next(iter(fake.attached)))
    emu.invalidate_in_use()
    rd = emu.state.resource_definitions["R2"]
    assert emu.in_use_reported(rd, rd.resources["VC"]) is True
    assert emu.in_use_reported(rd, rd.resources["VB"]) is False
    with pytest.raises(rc.ApiFailure) as exc:
        api_rsc.delete_rsc(emu, Request("DELETE", "/", {"rd": "r2", "node": "vc"}))
    assert exc.value.entries[0].code == rc.FAIL_IN_USE
    fake.busy.clear()
    emu.invalidate_in_use()
    api_rsc.delete_rsc(emu, Request("DELETE", "/", {"rd": "r2", "node": "vc"}))
    assert fake.attached == {}


def test_state_round_trip_and_incremental_save(emu: Emulator, tmp_path: Path) -> None:
    for name in ("a1", "b2"):
        call(api_rd.create_rd, emu, {}, {"resource_definition": {"name": name, "props": {"Aux/x": name}}})
    emu.persist()
    emu.state.resource_definitions["A1"].props["Aux/x"] = "changed"
    emu.state.resource_definitions["B2"].props["Aux/x"] = "not saved yet"
    emu.persist({"A1"})
    loaded = st.load(emu.config.state_dir)
    assert loaded is not None
    assert loaded.resource_definitions["A1"].props == {"Aux/x": "changed"}
    assert loaded.resource_definitions["B2"].props == {"Aux/x": "b2"}
    emu.persist()
    full = st.load(emu.config.state_dir)
    assert full is not None and full.to_json() == emu.state.to_json()
    del emu.state.resource_definitions["A1"]
    emu.persist(set())
    again = st.load(emu.config.state_dir)
    assert again is not None and set(again.resource_definitions) == {"B2"}


def test_resize_rules_by_mode(emu: Emulator) -> None:
    call(api_rd.create_rd, emu, {}, {"resource_definition": {"name": "grow"}})
    call(api_rd.create_vd, emu, {"rd": "grow"}, {"volume_definition": {"size_kib": 4096}})
    put = Request("PUT", "/", {"rd": "grow", "nr": "0"}, {}, b'{"size_kib": 2048}')
    with pytest.raises(rc.ApiFailure) as exc:
        api_rd.modify_vd(emu, put)
    assert exc.value.entries[0].code == rc.FAIL_INVLD_VLM_SIZE
    emu.config.drbd_shaped = False
    emu.state.resource_definitions["GROW"].layer_stack = ["STORAGE"]
    entries = api_rd.modify_vd(emu, Request("PUT", "/", {"rd": "grow", "nr": "0"}, {}, b'{"size_kib": 2048}'))
    assert entries[0].code == rc.MODIFIED
    assert emu.state.resource_definitions["GROW"].volume_definitions["0"].size_kib == 2048


def test_fault_rules_count_down_and_match_method() -> None:
    f = Faults()
    f.add_error("POST", "^/v1/resource-definitions$", 503, error_ret_code(997), 2)
    assert f.take_error("GET", "/v1/resource-definitions") is None
    first = f.take_error("POST", "/v1/resource-definitions")
    assert (
        first is not None
        and first[0] == 503
        and first[1][0]["ret_code"] & MASK_SEVERITY_AND_CODE == 0xC0000000000003E5
    )
    assert f.take_error("POST", "/v1/resource-definitions") is not None
    assert f.take_error("POST", "/v1/resource-definitions") is None
    f.add_error(None, "nodes", 500, error_ret_code(-4611686018427387603), -1)
    for _ in range(3):
        assert f.take_error("GET", "/v1/nodes") is not None
    f.set_latency(250, "version")
    assert f.latency_for("/v1/controller/version") == 0.25 and f.latency_for("/v1/nodes") == 0.0
    f.clear()
    assert f.take_error("GET", "/v1/nodes") is None and f.latency_for("/v1/controller/version") == 0.0


def test_external_names_become_valid_resource_names(emu: Emulator) -> None:
    def create(external: str) -> str:
        entries = call(
            api_rd.create_rd, emu, {}, {"resource_definition": {"name": "", "external_name": external}}
        )
        return entries[0].obj_refs["RscDfn"]

    assert create("plain-name") == "plain-name"
    assert create("my volume/1") == "my_volume_1"
    assert create("0f8a4b2c-1d2e-4f5a-8b9c-0123456789ab") == "LS_0f8a4b2c_1d2e_4f5a_8b9c_0123456789ab"
    again = create("plain-name")
    assert again.startswith("LS_") and again != "plain-name"
    rd = emu.state.resource_definitions[again.upper()]
    assert rd.external_name == "plain-name"


def test_latency_rules_are_kept_per_phase() -> None:
    f = Faults()
    f.set_latency(100, "spawn", "host")
    f.set_latency(200, None, "answer")
    assert f.latency_for("/v1/resource-groups/g/spawn", "host") == 0.1
    assert f.latency_for("/v1/resource-groups/g/spawn") == 0.0  # the request phase has no rule
    assert f.latency_for("/v1/nodes", "answer") == 0.2
    assert set(f.describe()["latency_by_phase"]) == {"host", "answer"}
    f.set_latency(0, None, "answer")
    assert f.latency_for("/v1/nodes", "answer") == 0.0
    with pytest.raises(ValueError, match="unknown latency phase"):
        f.set_latency(1, None, "later")


def test_a_restart_removes_files_the_saved_state_does_not_name(emu: Emulator) -> None:
    call(api_rd.create_rd, emu, {}, {"resource_definition": {"name": "kept"}})
    call(api_rd.create_vd, emu, {"rd": "kept"}, {"volume_definition": {"size_kib": 1024}})
    call(api_rsc.create_rsc, emu, {"rd": "kept", "node": "here"})
    emu.persist()
    storage = emu.storage
    assert isinstance(storage, FakeStorage)
    storage.files["/orphan/left_00000.img"] = 1024  # made by a request the crash cut short
    again = Emulator(emu.config, storage)
    again.bootstrap()
    kept = again.state.resource_definitions["KEPT"].volume_definitions["0"].backing
    assert list(storage.files) == [kept]

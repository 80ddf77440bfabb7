"""kill -9 of the emulator in the middle of a create or an attach converges after a restart.

Injected latency (``/_emu/latency`` with a ``phase``) holds the request at a known point: before
it is handled, before each host command (the resource is registered in memory, its backing file
exists, its loop device may be attached), or after its change is saved but before the answer.
The emulator is killed there, started again on the same state, and then:

- the state is the one from before the request, or the finished change (never a half);
- no loop device, backing file or device node is left that the state does not need;
- the client's retry succeeds, and the volume holds data.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from emulator import state as st
from tests.blockio import loops_backed_under, read_at, write_at
from tests.conftest import EmulatorProcess

VIRTUAL = "node-b"
SIZE_KIB = 32 * 1024
FAIL_EXISTS_RSC_DFN = 501


@pytest.fixture
def emu(root_loop: None, emulator_factory: Callable[..., EmulatorProcess]) -> Iterator[EmulatorProcess]:
    emulator = emulator_factory(nodes=(VIRTUAL,))
    yield emulator
    # Released by the factory's reset; a test that failed half-way may have left its own loop.
    for loop in loops_backed_under(emulator.state_dir):
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def _local(emu: EmulatorProcess) -> str:
    nodes = requests.get(emu.url + "/v1/nodes", timeout=10).json()
    return next(n["name"] for n in nodes if n["type"] == "COMBINED")


def _spawn(emu: EmulatorProcess, name: str, node: str, fs: bool = True) -> requests.Response:
    return requests.post(
        emu.url + "/v1/resource-groups/DfltRscGrp/spawn",
        json={
            "resource_definition_name": name,
            "volume_sizes": [SIZE_KIB],
            "resource_definition_props": {"FileSystem/Type": "ext4"} if fs else {},
            "select_filter": {"place_count": 1, "node_name_list": [node]},
        },
        timeout=60,
    )


def _make_available(emu: EmulatorProcess, name: str, node: str) -> requests.Response:
    return requests.post(
        f"{emu.url}/v1/resource-definitions/{name}/resources/{node}/make-available",
        json={"diskful": False},
        timeout=60,
    )


def _saved(emu: EmulatorProcess) -> dict[str, Any]:
    """What a restart would read: the state file and its journal."""
    try:
        saved = st.load(emu.state_dir)
    except (OSError, ValueError):
        return {}
    return saved.to_json() if saved is not None else {}


def _latency_faults(emu: EmulatorProcess) -> float:
    for line in requests.get(emu.url + "/metrics", timeout=10).text.splitlines():
        if line.startswith('linstor_emulator_injected_faults_total{kind="latency"}'):
            return float(line.split()[-1])
    return 0.0


def _kill_when(
    emu: EmulatorProcess, call: Callable[[], requests.Response], ready: Callable[[], bool]
) -> None:
    """Start the call, wait until ``ready`` says it reached the point under test, kill -9 the emulator."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["answer"] = call()
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    try:
        for _ in range(600):
            if ready():
                break
            assert thread.is_alive(), f"the call finished before the kill point: {outcome}"
            thread.join(0.02)
        else:
            pytest.fail("the call never reached the kill point")
        assert emu.proc is not None
        emu.proc.kill()
        emu.proc.wait()
        emu.proc = None
    finally:
        thread.join(60)
    assert "answer" not in outcome, f"the call was answered although the emulator was killed: {outcome}"


def _volume_device(emu: EmulatorProcess, name: str, node: str) -> str:
    answer = requests.get(f"{emu.url}/v1/resource-definitions/{name}/resources/{node}/volumes/0", timeout=10)
    assert answer.status_code == 200, answer.text
    device = answer.json()["device_path"]
    assert stat.S_ISBLK(os.stat(device).st_mode), f"{device} is not a block device"
    return str(device)


def _assert_only(emu: EmulatorProcess, images: list[str], devices: int) -> None:
    """On the host: exactly these backing files, ``devices`` loops and device nodes, no temp files."""
    found = sorted(p.name for p in emu.state_dir.glob("pools/*/*/*") if p.is_file())
    assert found == sorted(images)
    assert len(loops_backed_under(emu.state_dir)) == devices
    assert len(list(emu.dev_dir.glob("*drbd*"))) == devices
    assert not list(emu.state_dir.glob(".state-*"))


def _fs_type(device: str) -> str:
    out = subprocess.run(["blkid", "-p", "-o", "value", "-s", "TYPE", device], capture_output=True, text=True)
    return out.stdout.strip()


def _assert_holds_data(device: str) -> None:
    payload = os.urandom(64 * 1024)
    write_at(device, 1 << 20, payload)
    assert read_at(device, 1 << 20, len(payload)) == payload


@pytest.mark.parametrize("phase", ["request", "host", "answer"])
def test_kill_during_a_create_converges_after_a_restart(emu: EmulatorProcess, phase: str) -> None:
    node = _local(emu)
    image = "crashvol_00000.img"
    assert emu.control("latency", {"ms": 3000, "paths": "spawn", "phase": phase}).status_code == 200

    def ready() -> bool:
        if phase == "request":
            return _latency_faults(emu) >= 1
        if phase == "host":  # the loop is attached; the delay before mkfs is running
            return any(
                Path(f"/sys/block/{Path(loop).name}/loop/backing_file").read_text().strip().endswith(image)
                for loop in loops_backed_under(emu.state_dir)
            )
        return "CRASHVOL" in _saved(emu).get("resource_definitions", {})

    _kill_when(emu, lambda: _spawn(emu, "crashvol", node), ready)
    emu.start()

    committed = phase == "answer"
    _assert_only(emu, [image] if committed else [], 1 if committed else 0)
    assert (requests.get(emu.url + "/v1/resource-definitions/crashvol", timeout=10).status_code == 200) is (
        committed
    )

    retry = _spawn(emu, "crashvol", node)
    if committed:
        assert retry.status_code == 500 and int(retry.json()[0]["ret_code"]) & 0x3FFF == FAIL_EXISTS_RSC_DFN
    else:
        assert retry.status_code == 201, retry.text
    device = _volume_device(emu, "crashvol", node)
    assert _fs_type(device) == "ext4"
    _assert_only(emu, [image], 1)
    _assert_holds_data(device)


@pytest.mark.parametrize("phase", ["host", "answer"])
def test_kill_during_an_attach_converges_after_a_restart(emu: EmulatorProcess, phase: str) -> None:
    node = _local(emu)
    image = "attachvol_00000.img"
    created = _spawn(emu, "attachvol", VIRTUAL, fs=False)
    assert created.status_code == 201, created.text
    _assert_only(emu, [image], 0)  # the only replica is on the virtual node: no device on this host
    assert emu.control("latency", {"ms": 3000, "paths": "make-available", "phase": phase}).status_code == 200
    resource = f"{emu.url}/v1/resource-definitions/attachvol/resources/{node}"

    def ready() -> bool:
        if phase == "host":  # registered in memory, waiting before its losetup
            return requests.get(resource, timeout=10).status_code == 200
        return node.upper() in _saved(emu)["resource_definitions"]["ATTACHVOL"]["resources"]

    _kill_when(emu, lambda: _make_available(emu, "attachvol", node), ready)
    emu.start()

    committed = phase == "answer"
    assert (requests.get(resource, timeout=10).status_code == 200) is committed
    _assert_only(emu, [image], 1 if committed else 0)

    retry = _make_available(emu, "attachvol", node)
    assert retry.status_code == 200, retry.text
    device = _volume_device(emu, "attachvol", node)
    _assert_only(emu, [image], 1)
    _assert_holds_data(device)

"""A slow satellite command holds up only its own resource.

The emulator runs host commands (losetup, blkid, mkfs, copies) without its state lock: a mkfs
that spins (``-E offset=99999999999`` keeps mkfs.ext4 busy for minutes) must not hang other
callers, and it is stopped at a time limit and reported like a failed satellite.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.blockio import loops_backed_under
from tests.conftest import EmulatorProcess

SPIN = "-E offset=99999999999"
SIZE_KIB = 16 * 1024
FAIL_UNKNOWN_ERROR = 998


def _code(entry: dict[str, Any]) -> int:
    return int(entry["ret_code"]) & 0x3FFF


def _local(emu: EmulatorProcess) -> str:
    nodes = requests.get(emu.url + "/v1/nodes", timeout=10).json()
    return next(n["name"] for n in nodes if n["type"] == "COMBINED")


def _spawn(emu: EmulatorProcess, name: str, node: str, mkfs_params: str = "") -> requests.Response:
    props = {"FileSystem/Type": "ext4"}
    if mkfs_params:
        props["FileSystem/MkfsParams"] = mkfs_params
    return requests.post(
        emu.url + "/v1/resource-groups/DfltRscGrp/spawn",
        json={
            "resource_definition_name": name,
            "volume_sizes": [SIZE_KIB],
            "resource_definition_props": props,
            "select_filter": {"place_count": 1, "node_name_list": [node]},
        },
        timeout=120,
    )


def _children(pid: int) -> list[str]:
    """Command lines of the processes whose parent is pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append((stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except (OSError, IndexError, ValueError):
            continue
    return found


@pytest.fixture
def slow_mkfs_emulator(root_loop: None, emulator_factory) -> EmulatorProcess:  # type: ignore[no-untyped-def]
    # The floor is far above what the other calls need, so the spinning mkfs is still running
    # when they answer, and low enough that the test sees it stopped.
    return emulator_factory(extra_args=("--mkfs-min-seconds", "20", "--mkfs-seconds-per-gib", "0"))


def test_a_spinning_mkfs_blocks_nobody_else_and_fails_like_a_satellite(
    slow_mkfs_emulator: EmulatorProcess,
) -> None:
    emu = slow_mkfs_emulator
    node = _local(emu)
    slow: dict[str, requests.Response] = {}
    thread = threading.Thread(target=lambda: slow.update(answer=_spawn(emu, "slowvol", node, SPIN)))
    thread.start()
    try:
        # Wait until mkfs is really running under the emulator.
        for _ in range(400):
            if any("offset=99999999999" in cmd for cmd in _children(emu.proc.pid)):  # type: ignore[union-attr]
                break
            thread.join(0.05)
        else:
            pytest.fail("the slow mkfs never started")

        # Reads and other volumes go on while it spins.
        assert requests.get(emu.url + "/v1/nodes", timeout=10).status_code == 200
        other = _spawn(emu, "othervol", node)
        assert other.status_code == 201, other.text
        # The resource in progress is visible to readers.
        rscs = requests.get(emu.url + "/v1/resource-definitions/slowvol/resources", timeout=10)
        assert rscs.status_code == 200 and [r["node_name"] for r in rscs.json()] == [node]
        # A second change of the same definition waits for the first to finish: it then finds
        # the definition gone (the failed spawn removed it), instead of deleting under mkfs.
        second: dict[str, requests.Response] = {}
        deleter = threading.Thread(
            target=lambda: second.update(
                answer=requests.delete(emu.url + "/v1/resource-definitions/slowvol", timeout=120)
            )
        )
        deleter.start()
        assert thread.is_alive(), "the slow create answered before the other calls were made"
    finally:
        thread.join(120)
    deleter.join(120)

    answer = slow["answer"]
    assert answer.status_code == 500, answer.text
    entry = answer.json()[0]
    assert _code(entry) == FAIL_UNKNOWN_ERROR
    assert "Failed to create a ext4 filesystem" in entry["message"] and node in entry["message"]
    assert "did not finish within 20s" in entry["cause"]
    assert entry["error_report_ids"]
    assert second["answer"].status_code == 200
    assert "not found" in second["answer"].json()[0]["message"]

    # Nothing of the failed volume is left: no definition, no process, no device.
    assert requests.get(emu.url + "/v1/resource-definitions/slowvol", timeout=10).status_code == 404
    assert not [c for c in _children(emu.proc.pid) if "mkfs" in c]  # type: ignore[union-attr]
    assert not list(emu.state_dir.glob("pools/*/*/slowvol_*"))
    state = requests.get(emu.url + "/_emu/state", timeout=10).json()
    assert [b for b in state["devices"] if "slowvol" in b] == []
    assert len(loops_backed_under(emu.state_dir)) == 1  # othervol's, placed on this host

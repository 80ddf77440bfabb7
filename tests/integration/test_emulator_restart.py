"""Data written through an emulated volume survives an emulator restart, driven by python-linstor.

The emulator keeps its state on disk and, at start-up, brings every local device back: the
loop device that still points at a backing file is reused, a lost one is recreated. These
tests check that from the outside, through the official client and the reported device path.
"""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import linstor
import pytest

from tests.blockio import loops_backed_under, read_at, write_at
from tests.conftest import EmulatorProcess

VIRTUAL = "node-b"
SIZE_KIB = 64 * 1024
OFFSET = 5 * 1024 * 1024


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[None]:
    """Requested before the emulator fixtures so it runs last: nothing of ours may outlive the test."""
    yield
    for loop in loops_backed_under(tmp_path):
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=False)


def _ok(replies: list[object]) -> None:
    assert linstor.Linstor.all_api_responses_no_error(replies), [str(r) for r in replies]


def _local_node(lin: linstor.Linstor) -> str:
    nodes = lin.node_list_raise().nodes
    local = [n.name for n in nodes if n.name != VIRTUAL]
    assert len(local) == 1, [n.name for n in nodes]
    return local[0]


def _device_path(lin: linstor.Linstor, rsc: str, node: str) -> str:
    resources = lin.volume_list_raise(filter_by_resources=[rsc], filter_by_nodes=[node]).resources
    assert len(resources) == 1
    path = resources[0].volumes[0].device_path
    assert path, "the emulator reported no device path"
    return str(path)


def _create_local_volume(
    emu: EmulatorProcess, rsc: str, props: dict[str, str] | None = None, layers: list[str] | None = None
) -> str:
    with linstor.Linstor(emu.url) as lin:
        _ok(lin.resource_dfn_create(rsc, layer_list=layers))
        if props:
            _ok(lin.resource_dfn_modify(rsc, props))
        _ok(lin.volume_dfn_create(rsc, SIZE_KIB))
        node = _local_node(lin)
        _ok(lin.resource_create([linstor.ResourceData(node, rsc, storage_pool="DfltStorPool")]))
        return _device_path(lin, rsc, node)


def _reported_after_restart(emu: EmulatorProcess, rsc: str) -> str:
    with linstor.Linstor(emu.url) as lin:
        return _device_path(lin, rsc, _local_node(lin))


def _assert_block_device(path: str) -> None:
    assert stat.S_ISBLK(os.stat(path).st_mode), f"{path} is not a block device"


@pytest.mark.parametrize(
    ("extra_args", "layers", "device_prefix"),
    [((), None, "drbd"), (("--storage-only",), ["storage"], "loop")],
    ids=["drbd-shaped", "storage-only"],
)
def test_data_reads_back_after_a_restart_on_the_same_device(
    root_loop: None,
    sweep: None,
    emulator_factory: Callable[..., EmulatorProcess],
    extra_args: tuple[str, ...],
    layers: list[str] | None,
    device_prefix: str,
) -> None:
    emu = emulator_factory(nodes=(VIRTUAL,), extra_args=extra_args)
    device = _create_local_volume(emu, "restart-raw", layers=layers)
    _assert_block_device(device)
    assert Path(device).name.startswith(device_prefix)
    payload = os.urandom(128 * 1024)
    write_at(device, OFFSET, payload)
    loops_before = loops_backed_under(emu.state_dir)
    assert len(loops_before) == 1

    emu.restart()

    assert _reported_after_restart(emu, "restart-raw") == device
    _assert_block_device(device)
    assert loops_backed_under(emu.state_dir) == loops_before  # reused, not a second loop on the file
    assert os.stat(device).st_rdev == os.stat(next(iter(loops_before))).st_rdev
    assert read_at(device, OFFSET, len(payload)) == payload


def test_devices_come_back_after_loops_and_nodes_were_lost(
    root_loop: None, sweep: None, emulator_factory: Callable[..., EmulatorProcess]
) -> None:
    """Like a host reboot: the loop devices and the device directory are gone, the state is not."""
    emu = emulator_factory(nodes=(VIRTUAL,))
    device = _create_local_volume(emu, "restart-reboot")
    payload = os.urandom(64 * 1024)
    write_at(device, OFFSET, payload)

    emu.stop()
    for loop in loops_backed_under(emu.state_dir):
        subprocess.run(["losetup", "-d", loop], capture_output=True, check=True)
    for node in emu.dev_dir.iterdir():
        node.unlink()
    assert loops_backed_under(emu.state_dir) == {}
    emu.start()

    reported = _reported_after_restart(emu, "restart-reboot")
    assert reported == device
    _assert_block_device(reported)
    loops = loops_backed_under(emu.state_dir)
    assert len(loops) == 1
    assert os.stat(reported).st_rdev == os.stat(next(iter(loops))).st_rdev
    assert read_at(reported, OFFSET, len(payload)) == payload


def test_a_formatted_volume_keeps_its_files_across_a_restart(
    root_loop: None, sweep: None, emulator_factory: Callable[..., EmulatorProcess], tmp_path: Path
) -> None:
    emu = emulator_factory(nodes=(VIRTUAL,))
    device = _create_local_volume(emu, "restart-fs", {"FileSystem/Type": "ext4"})
    target = tmp_path / "mnt"
    target.mkdir()
    subprocess.run(["mount", device, str(target)], capture_output=True, text=True, check=True)
    try:
        (target / "hello.txt").write_text("still here")
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, text=True, check=True)

    emu.restart()

    device = _reported_after_restart(emu, "restart-fs")
    subprocess.run(["mount", device, str(target)], capture_output=True, text=True, check=True)
    try:
        assert (target / "hello.txt").read_text() == "still here"
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, text=True, check=True)

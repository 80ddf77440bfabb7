"""The in-process probe and mounts (plugin/node/native.py) against the tools they replace.

The probe must see whatever ``blkid -p`` sees, so each case prepares a real loop device
(blank, each filesystem, swap, a bare partition table, two filesystems at once) and asks
both; the mounts must leave the mount table as ``mount`` would, and a mount the kernel
refuses must still fail with mount(8)'s own words. Staging through NodeOps then runs no
probe or mount command at all.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from plugin.errors import OperationFailed
from plugin.node.commandlines import parse_blkid_export
from plugin.node.commands import CommandResult, run
from plugin.node.mounttable import read_mountinfo, top_mount
from plugin.node.native import NativeCalls, NativeUnavailable, ProbeAnswer
from plugin.node.ops import NodeOps
from tests.e2e import test_nodeops as shared
from tests.e2e.test_no_reformat import put_dos_partition_table
from tests.e2e.test_nodeops import LoopDevice

make_loop = shared.make_loop

pytestmark = pytest.mark.root


class CountingNative(NativeCalls):
    """The real in-process calls, recorded by name."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def probe(self, device: str) -> ProbeAnswer:
        self.calls.append("probe")
        return super().probe(device)

    def mount(self, source: str, target: str, fs_type: str, options: Sequence[str], readonly: bool) -> None:
        self.calls.append("mount")
        super().mount(source, target, fs_type, options, readonly)

    def bind(self, source: str, target: str) -> None:
        self.calls.append("bind")
        super().bind(source, target)


class Recorder:
    """A real runner that records the tools it ran."""

    def __init__(self) -> None:
        self.tools: list[str] = []

    def __call__(self, args: Sequence[str], **kwargs: Any) -> CommandResult:
        self.tools.append(args[0])
        return run(args, **kwargs)


def counted_ops() -> tuple[NodeOps, CountingNative, Recorder]:
    native, recorder = CountingNative(), Recorder()
    return NodeOps(device_timeout=5.0, run=recorder, native=native), native, recorder


def blkid(device: str) -> tuple[int, dict[str, str]]:
    done = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True)
    values = parse_blkid_export(done.stdout)
    values.pop("DEVNAME", None)
    return done.returncode, values


def two_filesystems(dev: LoopDevice, tmp_path: Path) -> None:
    """An ext4 with an xfs superblock copied over its first sector (blkid: ambivalent)."""
    xfs_image = tmp_path / "xfs.img"
    xfs_image.touch()
    subprocess.run(["truncate", "-s", "320M", str(xfs_image)], check=True)
    subprocess.run(["mkfs.xfs", "-q", str(xfs_image)], check=True, capture_output=True)
    subprocess.run(["mkfs.ext4", "-q", dev.path], check=True, capture_output=True)
    with open(xfs_image, "rb") as src, open(dev.path, "r+b") as dst:
        dst.write(src.read(512))


PREPARE: dict[str, Callable[[LoopDevice, Path], None]] = {
    "blank": lambda dev, tmp: None,
    "ext4": lambda dev, tmp: subprocess.run(["mkfs.ext4", "-q", "-L", "node-ops", dev.path], check=True),
    "xfs": lambda dev, tmp: subprocess.run(["mkfs.xfs", "-q", dev.path], check=True),
    "btrfs": lambda dev, tmp: subprocess.run(["mkfs.btrfs", "-q", dev.path], check=True),
    "swap": lambda dev, tmp: subprocess.run(["mkswap", dev.path], check=True, capture_output=True),
    "dos partition table": lambda dev, tmp: put_dos_partition_table(dev),
    "two filesystems": two_filesystems,
}


@pytest.mark.parametrize("kind", list(PREPARE))
def test_the_in_process_probe_sees_what_blkid_sees(
    make_loop: Callable[..., LoopDevice], tmp_path: Path, kind: str
) -> None:
    dev = make_loop()
    PREPARE[kind](dev, tmp_path)
    code, values = blkid(dev.path)
    answer = NativeCalls().probe(dev.path)
    assert (answer.code, answer.values) == (code, values)
    ops, native, recorder = counted_ops()
    found = ops.filesystem_signature(dev.path)
    assert native.calls == ["probe"] and recorder.tools == []
    assert (found is None) == (kind == "blank")


def test_blkid_answers_when_the_in_process_probe_cannot(make_loop: Callable[..., LoopDevice]) -> None:
    class NoLibrary(NativeCalls):
        def probe(self, device: str) -> ProbeAnswer:
            raise NativeUnavailable("libblkid is not available")

    dev = make_loop()
    subprocess.run(["mkfs.ext4", "-q", dev.path], check=True)
    recorder = Recorder()
    ops = NodeOps(device_timeout=5.0, run=recorder, native=NoLibrary())
    assert ops.filesystem_signature(dev.path) == "ext4"
    assert recorder.tools == ["blkid"]


def test_a_fresh_stage_runs_only_mkfs_and_publishes_without_a_command(
    make_loop: Callable[..., LoopDevice], tmp_path: Path
) -> None:
    dev = make_loop()
    ops, native, recorder = counted_ops()
    staging, target = tmp_path / "staging", tmp_path / "target"
    ops.stage(dev.path, str(staging), "ext4", mount_opts=["noatime", "nodev", "data=journal"])
    assert recorder.tools == ["mkfs.ext4"] and native.calls == ["probe", "mount"]
    entry = top_mount(read_mountinfo(), str(staging))
    assert entry is not None and entry.fs_type == "ext4" and not entry.read_only
    assert {"noatime", "nodev"} <= set(entry.mount_options)
    assert "data=journal" in entry.super_options  # the filesystem's own option reached the kernel
    ops.bind_mount(str(staging), str(target))
    assert native.calls[-1] == "bind" and recorder.tools == ["mkfs.ext4"]
    assert ops.mounts_of(dev.path) == [str(staging), str(target)]
    (target / "hello").write_text("through the bind")
    assert (staging / "hello").read_text() == "through the bind"

    # A read-only bind: the bind in-process, the remount that makes it read-only by mount(8).
    ro = tmp_path / "ro"
    ops.bind_mount(str(staging), str(ro), readonly=True)
    assert native.calls[-1] == "bind" and recorder.tools[-1] == "mount"
    ro_entry = top_mount(read_mountinfo(), str(ro))
    assert ro_entry is not None and ro_entry.read_only


def test_a_mount_the_kernel_refuses_fails_with_mounts_own_words(
    make_loop: Callable[..., LoopDevice], tmp_path: Path
) -> None:
    dev = make_loop()
    subprocess.run(["mkfs.ext4", "-q", dev.path], check=True)
    ops, native, recorder = counted_ops()
    with pytest.raises(OperationFailed) as info:
        ops.mount(dev.path, str(tmp_path / "wrong"), "xfs")
    assert native.calls == ["mount"] and recorder.tools == ["mount"]  # tried in-process, then by mount(8)
    assert f"mount -w -t xfs -o <1 option> {dev.path}" in str(info.value)
    assert "wrong fs type" in str(info.value)
    assert not (tmp_path / "wrong").exists()  # the mount point it made is gone again


def test_selinux_contexts_are_left_to_mount(make_loop: Callable[..., LoopDevice], tmp_path: Path) -> None:
    """libmount drops context= options on a host without SELinux; mount(2) would refuse them."""
    dev = make_loop()
    ops, native, recorder = counted_ops()
    ops.stage(dev.path, str(tmp_path / "s"), "ext4", mount_opts=["context=system_u:object_r:tmp_t:s0"])
    assert recorder.tools == ["mkfs.ext4", "mount"] and native.calls == ["probe", "mount"]
    assert ops.mounts_of(dev.path) == [str(tmp_path / "s")]

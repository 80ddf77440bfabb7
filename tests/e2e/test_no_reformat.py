"""A device that holds anything is never formatted, by any path of NodeOps.

Each case puts something on a real loop device (a filesystem with a file in it, a bare
partition table, swap), fingerprints the whole device, drives every path that could
format (format_if_blank, stage, stage with another filesystem type, read-only stage,
mount with the wrong type) and checks the device is byte-for-byte unchanged, or for the
matching type that the data is still there.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from plugin.errors import FailedPrecondition, OperationFailed
from plugin.node.ops import NodeOps
from tests.e2e import test_nodeops as shared
from tests.e2e.test_nodeops import FILESYSTEMS, LoopDevice

# The loop-device fixtures live with the other node-operation tests.
make_loop = shared.make_loop
ops = shared.ops

pytestmark = pytest.mark.root

PAYLOAD = b"important data that must survive\n" * 1000


def put_filesystem_with_data(dev: LoopDevice, fs: str, tmp_path: Path) -> None:
    """Make a filesystem and a file with the tools directly, not through the code under test."""
    subprocess.run([f"mkfs.{fs}", "-q", dev.path], check=True, capture_output=True)
    mnt = tmp_path / f"setup-{fs}"
    mnt.mkdir()
    subprocess.run(["mount", "-t", fs, dev.path, str(mnt)], check=True, capture_output=True)
    try:
        (mnt / "data.txt").write_bytes(PAYLOAD)
    finally:
        subprocess.run(["umount", str(mnt)], check=True, capture_output=True)
    mnt.rmdir()


def put_dos_partition_table(dev: LoopDevice) -> None:
    """An MBR with one Linux partition and nothing else on the disk."""
    entry = struct.pack("<B3sB3sII", 0x00, b"\x00\x02\x00", 0x83, b"\xfe\xff\xff", 2048, 100_000)
    with open(dev.path, "r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")
        f.flush()
        os.fsync(f.fileno())


def refuse_everything(ops: NodeOps, dev: LoopDevice, tmp_path: Path, types: tuple[str, ...]) -> None:
    """Every formatting path for each type in ``types`` must refuse and leave no trace."""
    staging = tmp_path / "staging"
    for fs in types:
        assert ops.format_if_blank(dev.path, fs) is False
        assert ops.format_if_blank(dev.path, fs, "-L newlabel") is False
        with pytest.raises(FailedPrecondition, match="neither formatted nor mounted"):
            ops.stage(dev.path, str(staging), fs)
        with pytest.raises(FailedPrecondition):
            ops.stage(dev.path, str(staging), fs, readonly=True)
        assert ops.mounts_of(dev.path) == []


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_filesystem_with_data_is_never_reformatted(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path, fs: str
) -> None:
    dev = make_loop()
    put_filesystem_with_data(dev, fs, tmp_path)
    before = dev.sha256()
    assert ops.filesystem_signature(dev.path) == fs

    others = tuple(t for t in FILESYSTEMS if t != fs)
    refuse_everything(ops, dev, tmp_path, others)
    assert ops.format_if_blank(dev.path, fs) is False
    with pytest.raises(OperationFailed):
        ops.mount(dev.path, str(tmp_path / "wrong-type"), others[0])
    assert dev.sha256() == before

    # The matching type stages with the data intact, whatever mkfs options are given.
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), fs, mkfs_opts="-L wiped")
    assert (staging / "data.txt").read_bytes() == PAYLOAD
    ops.unmount(str(staging))
    assert (
        "LABEL=wiped"
        not in subprocess.run(
            ["blkid", "-p", "-o", "export", dev.path], capture_output=True, text=True
        ).stdout
    )


@pytest.mark.parametrize("kind", ["dos partition table", "swap"])
def test_non_filesystem_signatures_are_never_formatted(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path, kind: str
) -> None:
    dev = make_loop()
    if kind == "swap":
        subprocess.run(["mkswap", dev.path], check=True, capture_output=True)
    else:
        put_dos_partition_table(dev)
    before = dev.sha256()
    assert ops.filesystem_signature(dev.path) == kind
    refuse_everything(ops, dev, tmp_path, FILESYSTEMS)
    with pytest.raises(FailedPrecondition, match="not a filesystem"):
        ops.mount(dev.path, str(tmp_path / "autodetect"))
    assert not (tmp_path / "autodetect").exists()
    assert dev.sha256() == before


def test_xfs_with_data_is_not_reformatted_when_ext4_is_asked(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    put_filesystem_with_data(dev, "xfs", tmp_path)
    before = dev.sha256()
    staging = tmp_path / "staging"
    with pytest.raises(FailedPrecondition, match="holds xfs, not ext4"):
        ops.stage(dev.path, str(staging), "ext4", mkfs_opts="-E nodiscard")
    assert ops.format_if_blank(dev.path, "ext4") is False
    assert not ops.is_mounted(str(staging))
    assert dev.sha256() == before
    ops.stage(dev.path, str(staging), "xfs")
    assert (staging / "data.txt").read_bytes() == PAYLOAD


def test_read_only_stage_of_blank_device_formats_nothing(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop(64 * 1024 * 1024)
    with pytest.raises(FailedPrecondition, match="never formatted"):
        ops.stage(dev.path, str(tmp_path / "s"), "ext4", readonly=True)
    with pytest.raises(FailedPrecondition, match="never formatted"):
        ops.stage(dev.path, str(tmp_path / "s"), "ext4", mount_opts=["ro"])
    assert ops.filesystem_signature(dev.path) is None


def test_data_written_after_first_stage_survives_restaging(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "ext4")
    (staging / "data.txt").write_bytes(PAYLOAD)
    ops.unmount(str(staging), remove_target=False)
    for _ in range(3):
        ops.stage(dev.path, str(staging), "ext4", mkfs_opts="-L again")
        assert (staging / "data.txt").read_bytes() == PAYLOAD
        ops.unmount(str(staging), remove_target=False)

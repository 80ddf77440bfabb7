"""Node operations on real loop devices: mkfs, mount, bind, block, grow, stats, condition.

Each test makes its own sparse files and loop devices in its temp dir (``make_loop``);
afterwards every mount below that dir is unmounted and only those loop devices are
detached. The fixture is also used by ``test_no_reformat.py``.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from plugin.config import Config
from plugin.errors import FailedPrecondition, InvalidArgument, NotFound, OperationFailed
from plugin.linstor.client import LinstorClient
from plugin.models import VolumeCondition
from plugin.node.commands import CommandResult, run
from plugin.node.mounttable import MountEntry, read_mountinfo
from plugin.node.native import NativeCalls, ProbeAnswer
from plugin.node.ops import NodeOps
from plugin.params.filesystems import FILESYSTEMS
from plugin.params.model import VolumeParams
from plugin.volumes.service import VolumeService
from testkit.waiting import wait_until
from tests.conftest import EmulatorProcess, require

pytestmark = pytest.mark.root

MiB = 1 << 20
SIZE = 320 * MiB  # mkfs.xfs wants at least 300 MiB


@dataclass
class LoopDevice:
    path: str
    backing: Path

    def grow(self, size: int) -> None:
        """Make the backing file bigger and tell the kernel, as a LINSTOR resize does."""
        os.truncate(self.backing, size)
        subprocess.run(["losetup", "-c", self.path], check=True, capture_output=True)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as f:
            while chunk := f.read(4 * MiB):
                digest.update(chunk)
        return digest.hexdigest()


def unmount_below(root: Path) -> None:
    """Undo every mount below the test's own temp dir, deepest first."""
    prefix = str(root.resolve()) + "/"
    points = [e.mount_point for e in read_mountinfo() if e.mount_point.startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)


@pytest.fixture
def make_loop(root_loop: None, tmp_path: Path) -> Iterator[Callable[..., LoopDevice]]:
    made: list[LoopDevice] = []

    def make(size: int = SIZE, read_only: bool = False, backing: Path | None = None) -> LoopDevice:
        if backing is None:
            backing = tmp_path / f"disk{len(made)}.img"
            backing.touch()
            os.truncate(backing, size)
        args = ["losetup", "-f", "--show", *(["-r"] if read_only else []), str(backing)]
        for attempt in range(5):  # another test on this machine may grab the same free device
            out = subprocess.run(args, capture_output=True, text=True)
            if out.returncode == 0:
                break
            time.sleep(0.2 * (attempt + 1))
        else:
            raise RuntimeError(f"losetup failed: {out.stderr.strip()}")
        loop = LoopDevice(out.stdout.strip(), backing)
        made.append(loop)
        return loop

    yield make
    unmount_below(tmp_path)
    for loop in made:
        # The kernel keeps a read-only flag across detach and reuse of a loop device.
        subprocess.run(["blockdev", "--setrw", loop.path], capture_output=True)
        subprocess.run(["losetup", "-d", loop.path], capture_output=True)


@pytest.fixture
def mounts_cleanup(tmp_path: Path) -> Iterator[None]:
    """Unmount whatever a failed test left below its temp dir (before the emulator stops)."""
    yield
    unmount_below(tmp_path)


@pytest.fixture
def ops() -> NodeOps:
    return NodeOps(device_timeout=5.0)


def write_file(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def ext4_error_trigger(device: str) -> Path:
    """The kernel's debug switch that records an ext4 error as real corruption would."""
    rdev = os.stat(device).st_rdev
    name = os.path.basename(os.path.realpath(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}"))
    trigger = Path(f"/sys/fs/ext4/{name}/trigger_fs_error")
    require(trigger.exists(), f"needs the kernel's ext4 error trigger {trigger}")
    return trigger


def can_resize_ext4_online() -> bool:
    """Online ext4 resize needs CAP_SYS_RESOURCE (bit 24), which many containers drop."""
    with open("/proc/self/status", encoding="ascii") as f:
        caps = next(line.split()[1] for line in f if line.startswith("CapEff:"))
    return bool(int(caps, 16) & (1 << 24))


def condition_eventually_abnormal(ops: NodeOps, path: str) -> VolumeCondition:
    """The kernel records an ext4 error in the superblock from a work queue, a moment later."""

    def abnormal() -> VolumeCondition | None:
        cond = ops.condition(path)
        return cond if cond.abnormal else None

    return wait_until(abnormal, timeout=5, interval=0.05, what=f"the condition of {path} turning abnormal")


def mkfs(device: str, fs: str) -> None:
    subprocess.run([f"mkfs.{fs}", "-q", device], check=True, capture_output=True)


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_format_mount_write_unmount_mount_read(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path, fs: str
) -> None:
    dev = make_loop()
    target = tmp_path / "mnt"
    assert ops.filesystem_signature(dev.path) is None
    assert ops.format_if_blank(dev.path, fs, "-L 'node ops'") is True  # the user's mkfs options apply
    assert ops.filesystem_signature(dev.path) == fs
    probe = subprocess.run(
        ["blkid", "-p", "-s", "LABEL", "-o", "value", dev.path], capture_output=True, text=True
    )
    assert probe.stdout.strip() == "node ops"
    assert ops.format_if_blank(dev.path, fs) is False

    ops.mount(dev.path, str(target), fs, options=["noatime"])  # and so do the mount options
    assert ops.is_mounted(str(target))
    assert ops.mount_source(str(target)) == dev.path
    assert ops.mounts_of(dev.path) == [str(target)]
    entry = next(e for e in read_mountinfo() if e.mount_point == str(target))
    assert "noatime" in entry.mount_options and not entry.read_only
    payload = os.urandom(256 * 1024)
    write_file(target / "hello.bin", payload)
    ops.mount(dev.path, str(target), fs, options=["noatime"])  # repeat: no-op

    ops.unmount(str(target))
    assert not target.exists() and ops.mounts_of(dev.path) == []
    ops.unmount(str(target))  # repeat: tolerated

    ops.mount(dev.path, str(target), fs)
    assert (target / "hello.bin").read_bytes() == payload
    stats = ops.stats(str(target))
    assert stats.total_bytes > 200 * MiB
    assert stats.used_bytes >= len(payload)
    assert 0 < stats.available_bytes < stats.total_bytes
    if fs == "btrfs":
        assert stats.total_inodes is None and stats.used_inodes is None
    else:
        assert stats.total_inodes and stats.used_inodes and stats.used_inodes >= 1
        assert stats.available_inodes and stats.available_inodes < stats.total_inodes
    assert not ops.condition(str(target)).abnormal


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_filesystem_grows_online_and_on_stage(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path, fs: str
) -> None:
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), fs, mount_opts=["noatime"])
    payload = os.urandom(64 * 1024)
    write_file(staging / "keep.bin", payload)
    first = ops.stats(str(staging)).total_bytes

    dev.grow(640 * MiB)
    assert ops.device_size_bytes(dev.path) == 640 * MiB
    if fs == "ext4" and not can_resize_ext4_online():
        # Without the capability the error says so; the offline path below (stage) grows it.
        with pytest.raises(FailedPrecondition, match="CAP_SYS_RESOURCE"):
            ops.grow_filesystem(str(staging))
        assert ops.stats(str(staging)).total_bytes == first
    else:
        ops.grow_filesystem(str(staging))  # online, as NodeExpandVolume does
        assert ops.stats(str(staging)).total_bytes > first + 250 * MiB
    second = ops.stats(str(staging)).total_bytes

    ops.unmount(str(staging), remove_target=False)
    dev.grow(960 * MiB)
    ops.stage(dev.path, str(staging), fs)  # offline growth is picked up when staging again
    third = ops.stats(str(staging)).total_bytes
    assert third > second + 250 * MiB
    assert (staging / "keep.bin").read_bytes() == payload
    ops.stage(dev.path, str(staging), fs)  # repeat: no-op
    assert ops.stats(str(staging)).total_bytes == third


def test_ext4_size_from_the_superblock_is_what_dumpe2fs_reports(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    from plugin.node import blockdev
    from plugin.node.commandlines import parse_dumpe2fs_size

    def dumpe2fs(device: str) -> int:
        out = subprocess.run(["dumpe2fs", "-h", device], check=True, capture_output=True, text=True).stdout
        return parse_dumpe2fs_size(out)

    for options in ([], ["-O", "^64bit", "-b", "1024"]):
        dev = make_loop()
        subprocess.run(["mkfs.ext4", "-q", *options, dev.path], check=True, capture_output=True)
        assert blockdev.ext4_size_bytes(dev.path) == dumpe2fs(dev.path)
        staging = tmp_path / f"staging{len(options)}"
        dev.grow(640 * MiB)
        ops.stage(dev.path, str(staging), "ext4")  # grown offline, then mounted
        assert blockdev.ext4_size_bytes(dev.path) == dumpe2fs(dev.path) > 600 * MiB
        assert ops.filesystem_size_bytes(dev.path, str(staging), "ext4") == dumpe2fs(dev.path)
    xfs = make_loop()
    mkfs(xfs.path, "xfs")
    assert blockdev.ext4_size_bytes(xfs.path) is None


def test_ext4_staged_twice_on_one_node_after_growth(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    """A second staging path while the first is mounted: no offline fsck/resize under a mount."""
    dev = make_loop()
    first, second = tmp_path / "rw-a", tmp_path / "rw-b"
    ops.stage(dev.path, str(first), "ext4")
    write_file(first / "f", b"still here")
    size = ops.stats(str(first)).total_bytes
    dev.grow(640 * MiB)
    ops.stage(dev.path, str(second), "ext4")  # grows online where the node may, never fails for it
    assert (second / "f").read_bytes() == b"still here"
    grown = ops.stats(str(second)).total_bytes
    if can_resize_ext4_online():
        assert grown > size + 250 * MiB
    else:
        assert grown == size
    assert sorted(ops.mounts_of(dev.path)) == sorted([str(first), str(second)])


def test_bind_mounts_read_write_and_read_only(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    staging, rw, ro = tmp_path / "staging", tmp_path / "pub-rw", tmp_path / "pub-ro"
    ops.stage(dev.path, str(staging), "ext4")
    (staging / "data").mkdir()

    ops.bind_mount(str(staging / "data"), str(rw))
    ops.bind_mount(str(staging / "data"), str(ro), readonly=True, options=["nosuid", "nodev"])
    ops.bind_mount(str(staging / "data"), str(ro), readonly=True)  # repeat: no-op
    write_file(rw / "via-rw.txt", b"written through the rw bind")
    assert (ro / "via-rw.txt").read_bytes() == b"written through the rw bind"
    with pytest.raises(OSError) as info:
        write_file(ro / "via-ro.txt", b"nope")
    assert info.value.errno == errno.EROFS

    with pytest.raises(FailedPrecondition, match="read-only"):
        ops.bind_mount(str(staging / "data"), str(ro), readonly=False)
    with pytest.raises(FailedPrecondition, match="other than"):
        ops.bind_mount(str(staging), str(rw))

    assert sorted(ops.mounts_of(dev.path)) == sorted([str(staging), str(rw), str(ro)])
    assert sorted(ops.mounts_of(str(staging / "data"))) == sorted([str(rw), str(ro)])
    assert ops.mount_source(str(ro)) == dev.path

    ops.unmount(str(ro))
    ops.unmount(str(rw))
    assert not ro.exists() and not rw.exists()
    assert (staging / "data" / "via-rw.txt").exists()
    ops.unmount(str(staging), remove_target=False)
    assert staging.is_dir() and not any(staging.iterdir())


def test_bind_mount_of_missing_source_changes_nothing(ops: NodeOps, tmp_path: Path, root_loop: None) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        ops.bind_mount(str(tmp_path / "nothing"), str(tmp_path / "target"))
    assert not (tmp_path / "target").exists()


def test_block_device_bound_onto_a_file(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop(64 * MiB)
    target = tmp_path / "pods" / "p1" / "volumeDevices" / "vol"
    ops.bind_block_device(dev.path, str(target))
    ops.bind_block_device(dev.path, str(target))  # repeat: no-op
    assert target.is_block_device()
    assert ops.mount_source(str(target)) == dev.path
    assert ops.mounts_of(dev.path) == [str(target)]

    block = os.urandom(4096)
    with open(target, "r+b") as f:
        f.seek(10 * MiB)
        f.write(block)
        f.flush()
        os.fsync(f.fileno())
    with open(dev.path, "rb") as f:
        f.seek(10 * MiB)
        assert f.read(4096) == block

    stats = ops.stats(str(target))
    assert stats.total_bytes == 64 * MiB and stats.total_inodes is None
    assert not ops.condition(str(target)).abnormal
    ops.grow_filesystem(str(target))  # a raw block volume is left alone

    ops.unmount(str(target))
    assert not target.exists()
    assert target.parent.is_dir()


def test_read_only_block_volume_refuses_writes_and_rw_comes_back(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop(64 * MiB)
    ro, rw = tmp_path / "ro-file", tmp_path / "rw-file"
    ops.bind_block_device(dev.path, str(ro), readonly=True)
    with pytest.raises(OSError) as info, open(ro, "r+b") as f:
        f.write(b"x" * 4096)
        f.flush()
        os.fsync(f.fileno())
    assert info.value.errno in (errno.EROFS, errno.EPERM, errno.EACCES)
    with pytest.raises(FailedPrecondition, match="read-only raw block device"):
        ops.bind_block_device(dev.path, str(rw))
    assert not rw.exists()

    ops.unmount(str(ro))
    rdev = os.stat(dev.path).st_rdev
    assert Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/ro").read_text().strip() == "0"
    ops.bind_block_device(dev.path, str(rw))
    with open(rw, "r+b") as f:
        f.write(b"y" * 4096)
        f.flush()
        os.fsync(f.fileno())
    with pytest.raises(FailedPrecondition, match="in use read-write"):
        ops.bind_block_device(dev.path, str(ro), readonly=True)


def test_mount_is_idempotent_and_refuses_conflicts(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    a, b = make_loop(), make_loop()
    mkfs(a.path, "ext4")
    mkfs(b.path, "ext4")
    target = tmp_path / "m"
    ops.mount(a.path, str(target), "ext4")
    with pytest.raises(FailedPrecondition, match="already mounted from"):
        ops.mount(b.path, str(target), "ext4")
    with pytest.raises(FailedPrecondition, match="read-write"):
        ops.mount(a.path, str(target), "ext4", readonly=True)
    assert ops.mounts_of(b.path) == []

    # An option mount refuses fails with mount's own words and leaves no mount point behind;
    # an option off the allow-list is refused before mount runs.
    with pytest.raises(OperationFailed, match="mount"):
        ops.mount(b.path, str(tmp_path / "bad"), "ext4", options=["sb=99999999"])
    assert not (tmp_path / "bad").exists()
    with pytest.raises(InvalidArgument, match='mount option "no_such_option_xyz" is not allowed for ext4'):
        ops.mount(b.path, str(tmp_path / "bad"), "ext4", options=["no_such_option_xyz"])
    assert not (tmp_path / "bad").exists()


def test_read_only_and_read_write_stage_of_one_volume_on_one_node(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    """Nomad stages per usage, so one device can be staged rw and ro at two paths."""
    dev = make_loop()
    rw, ro = tmp_path / "rw-staging", tmp_path / "ro-staging"
    ops.stage(dev.path, str(rw), "xfs")
    write_file(rw / "f", b"shared")
    ops.stage(dev.path, str(ro), "xfs", readonly=True)
    ops.stage(dev.path, str(ro), "xfs", readonly=True)  # repeat: no-op
    assert (ro / "f").read_bytes() == b"shared"
    with pytest.raises(OSError) as info:
        write_file(ro / "g", b"x")
    assert info.value.errno == errno.EROFS
    assert sorted(ops.mounts_of(dev.path)) == sorted([str(rw), str(ro)])
    ops.unmount(str(ro))
    ops.unmount(str(rw))

    # the other way round: read-only first, then read-write is refused with a reason
    ops.stage(dev.path, str(ro), "xfs", readonly=True)
    with pytest.raises(FailedPrecondition, match="mounted read-only at"):
        ops.stage(dev.path, str(rw), "xfs")
    assert not rw.exists() or not ops.is_mounted(str(rw))


def test_read_only_stage_protects_the_device_until_read_write_use(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    mkfs(dev.path, "xfs")
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "xfs", readonly=True)
    rdev = os.stat(dev.path).st_rdev
    ro_flag = Path(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/ro")
    assert ro_flag.read_text().strip() == "1"  # no journal replay, no DRBD promotion
    entry = next(e for e in read_mountinfo() if e.mount_point == str(staging))
    assert entry.read_only and "norecovery" in entry.super_options
    ops.unmount(str(staging), remove_target=False)
    assert ro_flag.read_text().strip() == "0"  # lifted with the last read-only use

    ops.stage(dev.path, str(staging), "xfs", readonly=True)
    subprocess.run(["umount", str(staging)], check=True)  # as if the node rebooted meanwhile
    assert ro_flag.read_text().strip() == "1"
    ops.stage(dev.path, str(staging), "xfs")  # read-write use lifts it as well
    assert ro_flag.read_text().strip() == "0"
    write_file(staging / "f", b"writable again")


def test_same_device_through_another_node_matches_by_number(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    st = os.stat(dev.path)
    node = tmp_path / "dev" / "drbd1000"
    node.parent.mkdir()
    os.mknod(node, 0o600 | (st.st_mode & 0o170000), st.st_rdev)
    staging = tmp_path / "staging"
    for fs in ("ext4", "btrfs"):  # btrfs shows an anonymous device number in mountinfo
        subprocess.run(["wipefs", "-a", "-q", dev.path], check=True)
        ops.stage(str(node), str(staging), fs)
        ops.stage(dev.path, str(staging), fs)  # same device by another name: no-op
        assert ops.mounts_of(dev.path) == [str(staging)]
        assert ops.mounts_of(str(node)) == [str(staging)]
        ops.unmount(str(staging))


@pytest.mark.parametrize("fs", ["xfs", "ext4"])
def test_read_only_mount_of_read_only_device(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path, fs: str
) -> None:
    dev = make_loop()
    mkfs(dev.path, fs)
    target = tmp_path / "m"
    ops.mount(dev.path, str(target), fs)
    write_file(target / "f", b"data")
    ops.unmount(str(target))
    subprocess.run(["losetup", "-d", dev.path], check=True)
    ro_dev = make_loop(read_only=True, backing=dev.backing)

    # read-write must fail loudly rather than fall back to read-only
    with pytest.raises(OperationFailed, match="mount"):
        ops.mount(ro_dev.path, str(target), fs)
    assert not ops.is_mounted(str(target))
    ops.mount(ro_dev.path, str(target), fs, readonly=True)
    assert (target / "f").read_bytes() == b"data"
    entry = next(e for e in read_mountinfo() if e.mount_point == str(target))
    assert entry.read_only
    skip = {"xfs": "norecovery", "ext4": "noload"}[fs]
    assert skip in entry.super_options or fs == "ext4"  # ext4 does not echo noload


def test_xfs_clone_mounts_beside_its_origin(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    """A restored snapshot carries its origin's xfs UUID; nouuid lets both be mounted."""
    origin = make_loop()
    mkfs(origin.path, "xfs")
    ops.mount(origin.path, str(tmp_path / "origin"))  # type detected by probing
    write_file(tmp_path / "origin" / "f", b"from the origin")
    ops.unmount(str(tmp_path / "origin"))
    clone_file = tmp_path / "clone.img"
    subprocess.run(["cp", "--sparse=always", str(origin.backing), str(clone_file)], check=True)
    clone = make_loop(backing=clone_file)
    ops.stage(origin.path, str(tmp_path / "a"), "xfs")
    ops.stage(clone.path, str(tmp_path / "b"), "xfs")
    assert (tmp_path / "b" / "f").read_bytes() == b"from the origin"
    assert ops.mount_source(str(tmp_path / "b")) == clone.path


def test_post_mount_xfs_opts_run_on_a_fresh_xfs_stage(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    """postMountXfsOpts of the official driver: an xfs_io command after the mount."""
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "xfs", post_mount_xfs_opts="extsize 1m")
    shown = subprocess.run(
        ["xfs_io", "-c", "extsize", str(staging)], capture_output=True, text=True, check=True
    )
    assert shown.stdout.startswith("[1048576]"), shown.stdout
    bad = tmp_path / "bad"
    with pytest.raises(OperationFailed, match="postMountXfsOpts"):
        ops.stage(make_loop().path, str(bad), "xfs", post_mount_xfs_opts="no-such-command")
    assert not ops.is_mounted(str(bad))  # a failed stage leaves nothing mounted


def test_stats_follow_usage(make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path) -> None:
    dev = make_loop()
    staging = tmp_path / "s"
    ops.stage(dev.path, str(staging), "ext4")
    before = ops.stats(str(staging))
    write_file(staging / "big", os.urandom(20 * MiB))
    for i in range(50):
        (staging / f"small{i}").write_bytes(b"")
    after = ops.stats(str(staging))
    assert after.total_bytes == before.total_bytes
    assert after.used_bytes - before.used_bytes >= 20 * MiB
    assert before.available_bytes - after.available_bytes >= 20 * MiB
    assert after.used_inodes is not None and before.used_inodes is not None
    assert after.used_inodes - before.used_inodes >= 51
    with pytest.raises(NotFound):
        ops.stats(str(tmp_path / "missing"))


def test_condition_sees_kernel_read_only_remount(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    staging, pub = tmp_path / "staging", tmp_path / "pub"
    ops.stage(dev.path, str(staging), "ext4", mount_opts=["errors=remount-ro"])
    ops.bind_mount(str(staging), str(pub))
    assert not ops.condition(str(pub)).abnormal
    trigger = ext4_error_trigger(dev.path)
    trigger.write_text("nodeops condition test\n")
    cond = condition_eventually_abnormal(ops, str(pub))
    assert cond.abnormal
    assert "read-only" in cond.message


def test_condition_sees_superblock_read_only_under_a_read_write_mount(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    staging, pub = tmp_path / "staging", tmp_path / "pub"
    ops.stage(dev.path, str(staging), "xfs")
    ops.bind_mount(str(staging), str(pub))
    # Remounting one mount read-only turns the whole superblock read-only; the bind
    # still says rw per mount, which is what a kernel error remount looks like.
    subprocess.run(["mount", "-o", "remount,ro", str(staging)], check=True, capture_output=True)
    cond = ops.condition(str(pub))
    assert cond.abnormal and "read-only" in cond.message
    assert not ops.condition(str(staging)).abnormal  # asked read-only there: fine


def test_condition_sees_recorded_ext4_errors(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "ext4", mount_opts=["errors=continue"])
    trigger = ext4_error_trigger(dev.path)
    trigger.write_text("nodeops condition test\n")
    cond = condition_eventually_abnormal(ops, str(staging))
    assert cond.abnormal
    assert "ext4 error" in cond.message and "fsck" in cond.message


def test_condition_sees_a_shut_down_xfs(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    require(shutil.which("xfs_io") is not None, "needs xfs_io (xfsprogs)")
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "xfs")
    # What xfs does by itself after a metadata I/O error.
    subprocess.run(["xfs_io", "-x", "-c", "shutdown", str(staging)], check=True, capture_output=True)
    cond = ops.condition(str(staging))
    assert cond.abnormal and "does not answer" in cond.message


def test_condition_after_unmount(make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path) -> None:
    dev = make_loop()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), "xfs")
    assert ops.condition(str(staging)).abnormal is False
    ops.unmount(str(staging), remove_target=False)
    cond = ops.condition(str(staging))
    assert cond.abnormal and "not mounted" in cond.message


def test_concurrent_format_formats_once(make_loop: Callable[..., LoopDevice], ops: NodeOps) -> None:
    dev = make_loop()
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(ops.format_if_blank(dev.path, "ext4")))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False, False, False, True]


def test_unsupported_filesystem_changes_nothing(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop(64 * MiB)
    with pytest.raises(InvalidArgument):
        ops.stage(dev.path, str(tmp_path / "s"), "vfat")
    assert ops.filesystem_signature(dev.path) is None
    assert not (tmp_path / "s").exists()


# ---------------------------------------------------------------------------------------
# The whole path a front end takes: LINSTOR (emulated) volume, attach, stage, publish, grow.

LOCAL = socket.gethostname().split(".")[0]


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_volume_lifecycle_through_the_core(
    emulator: EmulatorProcess, mounts_cleanup: None, ops: NodeOps, tmp_path: Path, fs: str
) -> None:
    config = Config(controllers=(emulator.url,), node_name=LOCAL, read_timeout=60.0, config_file=None)
    svc = VolumeService(LinstorClient(config), config)
    params = VolumeParams(place_count=1, fs_type=fs, nodes=(LOCAL,))
    vol = svc.create_volume(f"nodeops-{fs}", SIZE, params)
    attachment = svc.attach(vol.id, LOCAL)
    device = attachment.device_path
    staging, publish = tmp_path / "staging", tmp_path / "publish"

    ops.stage(device, str(staging), fs)
    ops.bind_mount(str(staging), str(publish))
    payload = os.urandom(128 * 1024)
    write_file(publish / "hello.bin", payload)
    ops.unmount(str(publish))
    ops.unmount(str(staging), remove_target=False)
    assert ops.mounts_of(device) == []

    ops.stage(device, str(staging), fs)
    assert (staging / "hello.bin").read_bytes() == payload
    before = ops.stats(str(staging)).total_bytes

    svc.expand_volume(vol.id, 2 * SIZE)
    assert ops.device_size_bytes(device) >= 2 * SIZE
    if fs == "ext4" and not can_resize_ext4_online():  # grown when staged again instead
        ops.unmount(str(staging), remove_target=False)
        ops.stage(device, str(staging), fs)
    else:
        ops.grow_filesystem(str(staging))
    assert ops.stats(str(staging)).total_bytes > before + 250 * MiB
    assert (staging / "hello.bin").read_bytes() == payload

    ops.unmount(str(staging))
    svc.detach(vol.id, LOCAL)
    svc.delete_volume(vol.id)


class CountingOps(NodeOps):
    """Real node operations that record each command they run and each mount table read.

    The in-process probe and mounts count under their tools' names (``blkid``, ``mount``):
    each does the work that tool did.
    """

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.table_reads = 0
        native = NativeCalls()
        probe, mount = native.probe, native.mount

        def counted_probe(device: str) -> ProbeAnswer:
            self.commands.append("blkid")
            return probe(device)

        def counted_mount(*args: Any) -> None:
            self.commands.append("mount")
            mount(*args)

        native.probe, native.mount = counted_probe, counted_mount  # type: ignore[method-assign]
        super().__init__(device_timeout=5.0, run=self._counted, native=native)
        read_table = self.host.mounts

        def counted_read() -> list[MountEntry]:
            self.table_reads += 1
            return read_table()

        self.host.mounts = counted_read  # type: ignore[method-assign]

    def _counted(self, args: Sequence[str], **kwargs: Any) -> CommandResult:
        self.commands.append(args[0])
        return run(args, **kwargs)


@pytest.mark.parametrize("fs", FILESYSTEMS)
def test_stage_of_a_fresh_volume_probes_once_and_reads_the_mount_table_once(
    make_loop: Callable[..., LoopDevice], tmp_path: Path, fs: str
) -> None:
    """The fast path: blkid, mkfs, mount; no second probe, no size queries of a filesystem just made."""
    dev = make_loop()
    ops = CountingOps()
    staging = tmp_path / "staging"
    ops.stage(dev.path, str(staging), fs)
    assert ops.commands == ["blkid", f"mkfs.{fs}", "mount"]
    assert ops.table_reads == 1
    assert ops.mounts_of(dev.path) == [str(staging)]
    assert ops.stats(str(staging)).total_bytes > 200 * MiB  # made to fill the device

    # A restage after growth still grows it: the size is only skipped when it is known.
    ops.unmount(str(staging), remove_target=False)
    dev.grow(640 * MiB)
    before = ops.commands[:]
    ops.stage(dev.path, str(staging), fs)
    assert ops.commands[len(before)] == "blkid" and ops.commands.count("blkid") == 2
    assert not any(c.startswith("mkfs") for c in ops.commands[len(before) :])
    assert ops.stats(str(staging)).total_bytes > 500 * MiB


def test_read_only_stage_probes_the_device_once(
    make_loop: Callable[..., LoopDevice], ops: NodeOps, tmp_path: Path
) -> None:
    dev = make_loop()
    ops.stage(dev.path, str(tmp_path / "rw"), "ext4")
    ops.unmount(str(tmp_path / "rw"), remove_target=False)
    counting = CountingOps()
    counting.stage(dev.path, str(tmp_path / "ro"), "ext4", readonly=True)
    assert counting.commands.count("blkid") == 1
    assert counting.table_reads == 1
    assert counting.mounts_of(dev.path) == [str(tmp_path / "ro")]

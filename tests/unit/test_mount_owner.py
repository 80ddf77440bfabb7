"""Which mounts node operations may undo for a volume, with a scripted mount table.

A stale filesystem mount of a device that has vanished is undone for a volume LINSTOR no
longer knows; a tmpfs (whatever its source text), an overlay or a mount of a present
device is refused and left alone; with nothing mounted, an empty target is removed. The
CSI node service doing this on real mounts is in tests/integration/test_csi_confinement.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.errors import FailedPrecondition
from plugin.node import blockdev
from plugin.node.commands import CommandResult
from plugin.node.ops import NodeOps
from plugin.node.unmounting import MountOwner

# ---------------------------------------------------------------- whose mount is it


class ScriptedMounts:
    """A mount table in a file, and a runner whose ``umount`` takes the line out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("1 0 254:0 / / rw - ext4 /dev/root rw\n")
        self.commands: list[tuple[str, ...]] = []

    def add(self, mount_id: int, device: str, point: Path, fs_type: str, source: str) -> None:
        with self.path.open("a") as fh:
            fh.write(f"{mount_id} 1 {device} / {point} rw,relatime - {fs_type} {source} rw\n")

    def run(self, args: list[str], **_: object) -> CommandResult:
        self.commands.append(tuple(args))
        if args[0] == "umount":  # the top mount at that point goes away
            lines = self.path.read_text().splitlines(keepends=True)
            at = [i for i, line in enumerate(lines) if line.split()[4] == args[-1]]
            if at:
                del lines[at[-1]]
            self.path.write_text("".join(lines))
        return CommandResult(tuple(args), 0, "", "")


def _absent_device() -> str:
    """A DRBD-style device number the kernel does not have (a resource that was taken down)."""
    for minor in range(65000, 65535):
        if not blockdev.present((147, minor)):
            return f"147:{minor}"
    pytest.skip("every probed DRBD minor exists")


@pytest.fixture
def table(tmp_path: Path) -> ScriptedMounts:
    return ScriptedMounts(tmp_path / "mountinfo")


def _ops(table: ScriptedMounts) -> NodeOps:
    return NodeOps(run=table.run, mountinfo_path=str(table.path))  # type: ignore[arg-type]


def test_a_stale_mount_of_a_vanished_device_is_undone_for_a_deleted_volume(
    table: ScriptedMounts, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    number = _absent_device()
    table.add(50, number, target, "ext4", f"/dev/drbd{number.split(':')[1]}")
    gone = MountOwner("pvc-deleted", None)
    assert _ops(table).mount_owned_by(str(target), gone) is True
    _ops(table).unmount(str(target), remove_target=True, owner=gone)
    assert ("umount", str(target)) in table.commands
    assert not target.exists()


@pytest.mark.parametrize(
    ("device", "fs_type", "source"),
    [
        ("0:77", "tmpfs", "/dev/nonexistent"),  # a tmpfs can name any source
        ("0:78", "tmpfs", "tmpfs"),
        ("0:79", "overlay", "overlay"),
        ("254:0", "ext4", "/dev/root"),  # hypothetically present: decided by the device number
    ],
)
def test_a_foreign_mount_is_never_undone(
    table: ScriptedMounts, tmp_path: Path, device: str, fs_type: str, source: str
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    table.add(60, device, target, fs_type, source)
    if fs_type == "ext4" and not blockdev.present((254, 0)):
        pytest.skip("this machine has no block device 254:0")
    owner = MountOwner("pvc-1", None)
    assert _ops(table).mount_owned_by(str(target), owner) is False
    with pytest.raises(FailedPrecondition, match="not unmounted"):
        _ops(table).unmount(str(target), remove_target=True, owner=owner)
    assert not any(c[0] == "umount" for c in table.commands)
    assert target.is_dir()


def test_nothing_mounted_is_not_owned_and_an_empty_target_is_removed(
    table: ScriptedMounts, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    target.mkdir()
    owner = MountOwner("pvc-1", None)
    assert _ops(table).mount_owned_by(str(target), owner) is None
    _ops(table).unmount(str(target), remove_target=True, owner=owner)
    assert table.commands == [] and not target.exists()

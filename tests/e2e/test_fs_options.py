"""mkfs and mount options on real loop devices: allowed ones work, refused ones touch nothing.

The node checks options right before mkfs and mount with the same allow-lists volume
creation uses; these tests drive NodeOps.stage (the path of Docker's Mount and CSI's
NodeStage) with a real mkfs, a real mount and real host files that refused options
would have reached.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from plugin.errors import InvalidArgument
from plugin.node.commands import CommandResult, run
from plugin.node.mounttable import read_mountinfo
from plugin.node.ops import NodeOps
from tests.e2e import test_nodeops as shared
from tests.e2e.test_nodeops import LoopDevice

# The loop-device fixtures live with the other node-operation tests.
make_loop = shared.make_loop

pytestmark = pytest.mark.root

ALLOWED = {
    "ext4": ("-L okdata -E nodiscard,lazy_itable_init=1 -m 1 -b 4096", ["noatime", "commit=17"]),
    "xfs": ("-L okdata -m crc=1,reflink=1 -K -d agcount=2", ["noatime", "inode64"]),
    "btrfs": ("--label okdata --nodiscard -m dup", ["noatime", "compress=zstd:1"]),
}


class RecordingRun:
    """The real ``run``, with every command remembered."""

    def __init__(self) -> None:
        self.commands: list[list[str]] = []

    def __call__(
        self, args: Sequence[str], *, timeout: float, ok_codes: Sequence[int] = (0,)
    ) -> CommandResult:
        self.commands.append(list(args))
        return run(args, timeout=timeout, ok_codes=ok_codes)


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.mark.parametrize("fs", sorted(ALLOWED))
def test_allowed_options_make_and_mount_the_filesystem(
    fs: str, make_loop: Callable[..., LoopDevice], tmp_path: Path
) -> None:
    mkfs_opts, mount_opts = ALLOWED[fs]
    dev = make_loop()
    staging = tmp_path / "staging"
    NodeOps(device_timeout=5.0).stage(dev.path, str(staging), fs, mkfs_opts=mkfs_opts, mount_opts=mount_opts)
    probe = subprocess.run(
        ["blkid", "-p", "-o", "export", dev.path], capture_output=True, text=True, check=True
    ).stdout
    assert f"TYPE={fs}" in probe and "LABEL=okdata" in probe
    entry = next(e for e in read_mountinfo() if e.mount_point == str(staging))
    assert "noatime" in entry.mount_options


@pytest.mark.parametrize("fs", sorted(ALLOWED))
def test_refused_mkfs_options_reach_no_host_file_and_no_device(
    fs: str, make_loop: Callable[..., LoopDevice], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's findings: a relative device name, a host directory, a spinning offset, -V."""
    monkeypatch.chdir(tmp_path)  # relative names resolve here, as in a daemon's working directory
    victim = make_loop(size=16 << 20)
    os.symlink(victim.path, tmp_path / "victimdev")
    host_dir = tmp_path / "hostdir"
    host_dir.mkdir()
    (host_dir / "secret.txt").write_text("host data\n")
    dev = make_loop(size=16 << 20)
    before = (victim.sha256(), dev.sha256())
    recorder = RecordingRun()
    ops = NodeOps(device_timeout=5.0, run=recorder)
    for mkfs_opts in ("victimdev", "-d hostdir", "-r hostdir", "--rootdir hostdir", "-E offset=99999999999",
                      "-V", "-p hostdir/secret.txt", "-L x victimdev"):  # fmt: skip
        with pytest.raises(InvalidArgument, match=f"invalid mkfs options .*not allowed for {fs}"):
            ops.stage(dev.path, str(tmp_path / "staging"), fs, mkfs_opts=mkfs_opts)
    assert recorder.commands == []  # refused before any command ran
    assert (victim.sha256(), dev.sha256()) == before
    assert not (tmp_path / "staging").exists()


def test_refused_mount_option_mounts_nothing(make_loop: Callable[..., LoopDevice], tmp_path: Path) -> None:
    """A CSI mount flag naming another device stops the stage before mkfs and mount."""
    dev = make_loop(size=16 << 20)
    before = dev.sha256()
    recorder = RecordingRun()
    ops = NodeOps(device_timeout=5.0, run=recorder)
    with pytest.raises(InvalidArgument, match='mount option "journal_path=/dev/x" is not allowed for ext4'):
        ops.stage(dev.path, str(tmp_path / "s"), "ext4", mount_opts=["noatime", "journal_path=/dev/x"])
    with pytest.raises(InvalidArgument, match='mount option "logdev=/dev/sdb" is not allowed for xfs'):
        ops.stage(dev.path, str(tmp_path / "s"), "xfs", mount_opts=["logdev=/dev/sdb"])
    assert recorder.commands == [] and dev.sha256() == before


def test_mount_options_never_reach_the_log(
    make_loop: Callable[..., LoopDevice], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="plugin.node")
    dev = make_loop()
    staging = tmp_path / "staging"
    secret_label = "labelsecret"
    NodeOps(device_timeout=5.0).stage(
        dev.path, str(staging), "ext4", mkfs_opts=f"-L {secret_label}", mount_opts=["noatime", "commit=17"]
    )
    entry = next(e for e in read_mountinfo() if e.mount_point == str(staging))
    assert "commit=17" in entry.super_options  # the options did reach mount
    # done in-process (mount(2)), logged as the command it stands for, options counted only
    assert f"mount(2) in-process for mount -w -t ext4 -o <2 options> {dev.path} {staging}" in caplog.text
    assert f"formatting mkfs.ext4 <2 arguments> {dev.path}" in caplog.text
    assert "commit=17" not in caplog.text and secret_label not in caplog.text

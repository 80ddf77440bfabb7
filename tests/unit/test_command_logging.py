"""Commands in logs and errors never show the user's options, and mkfs gets a time limit by size."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from plugin.errors import OperationFailed
from plugin.node import commands as nodeops
from plugin.node.commandlines import loggable_command
from plugin.node.commands import CommandResult, mkfs_timeout
from plugin.node.ops import NodeOps

GIB = 1 << 30


def test_user_options_are_counted_not_shown() -> None:
    assert loggable_command(
        ["mount", "-w", "-t", "ext4", "-o", "noatime,commit=5,context=x", "/dev/d", "/t"]
    ) == ("mount -w -t ext4 -o <3 options> /dev/d /t")
    assert loggable_command(["mount", "-o", "remount,bind,ro", "/t"]) == "mount -o <3 options> /t"
    assert loggable_command(["mkfs.ext4", "-L", "my data", "/dev/d"]) == "mkfs.ext4 <2 arguments> /dev/d"
    assert loggable_command(["mkfs.xfs", "/dev/d"]) == "mkfs.xfs /dev/d"
    assert loggable_command(["xfs_io", "-c", "extsize 4m", "/m"]) == "xfs_io -c <command> /m"
    assert loggable_command(["umount", "/a b"]) == "umount '/a b'"
    assert loggable_command(["mount", "--bind", "/s", "/t"]) == "mount --bind /s /t"


def test_a_failing_mount_is_logged_and_reported_without_its_options(caplog: pytest.LogCaptureFixture) -> None:
    """A real mount that fails: the debug line and the error name the command, never the options."""
    caplog.set_level(logging.DEBUG, logger="plugin.node")
    secret = "context=system_u:object_r:secret_t:s0"
    with pytest.raises(OperationFailed) as info:
        nodeops.run(
            ["mount", "-t", "ext4", "-o", f"noatime,{secret}", "/nonexistent-dev", "/nonexistent-dir"]
        )
    message = str(info.value)
    assert message.startswith("mount -t ext4 -o <2 options> /nonexistent-dev /nonexistent-dir failed (exit ")
    assert "running mount -t ext4 -o <2 options> /nonexistent-dev /nonexistent-dir" in caplog.text
    for text in (message, caplog.text, str(info.value.details)):
        assert "secret_t" not in text and "noatime" not in text


def test_a_timed_out_command_keeps_its_options_hidden(tmp_path: Path) -> None:
    """A real process under the name xfs_io (Python behind a link) that outlives its limit."""
    tool = tmp_path / "xfs_io"
    tool.symlink_to(sys.executable)
    with pytest.raises(OperationFailed) as info:
        nodeops.run([str(tool), "-c", "import time; time.sleep(30)", "/x"], timeout=0.2)
    assert str(info.value) == f"{tool} -c <command> /x did not finish within 0.2s"
    assert info.value.details["timed_out"] is True


def test_mkfs_time_limit_grows_with_the_device() -> None:
    assert mkfs_timeout(0) == nodeops.MKFS_TIMEOUT_FLOOR
    assert mkfs_timeout(10 * GIB, floor=60, per_gib=2) == 80
    assert mkfs_timeout(GIB // 2, floor=1, per_gib=4) == 3
    assert mkfs_timeout(100 * GIB) > mkfs_timeout(10 * GIB) > mkfs_timeout(GIB)


def test_mkfs_that_runs_out_of_time_says_why(tmp_path: Path) -> None:
    """A real blank image file and a real (sleeping) process in mkfs's place."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * (4 << 20))
    ran: list[list[str]] = []

    def runner(args: Sequence[str], *, timeout: float, ok_codes: Sequence[int] = (0,)) -> CommandResult:
        argv = list(args)
        if argv[0].startswith("mkfs."):
            ran.append(argv)
            return nodeops.run([sys.executable, "-c", "import time; time.sleep(30)"], timeout=timeout)
        return nodeops.run(argv, timeout=timeout, ok_codes=ok_codes)

    ops = NodeOps(run=runner, mkfs_timeout_floor=0.3, mkfs_seconds_per_gib=0.0)
    with pytest.raises(OperationFailed) as info:
        ops.format_if_blank(str(image), "ext4", "-L secretlabel")
    message = str(info.value)
    assert message.startswith(f"mkfs.ext4 <2 arguments> {image} did not finish within 0.3s, the time allowed")
    assert "formatting 4MiB (0.3s plus 0s per GiB)" in message
    assert "an mkfs option made mkfs do far more work" in message
    assert "secretlabel" not in message
    assert ran == [["mkfs.ext4", "-L", "secretlabel", str(image)]]

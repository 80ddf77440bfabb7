"""Commands in logs and errors never show the user's options."""

from __future__ import annotations

import logging

import pytest

from plugin import nodeops
from plugin.errors import OperationFailed
from plugin.nodecommands import loggable_command


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
    caplog.set_level(logging.DEBUG, logger="plugin.nodeops")
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

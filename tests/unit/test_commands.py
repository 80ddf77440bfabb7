"""Host commands: their output, exit status and time limit, with the exit watched rather than polled."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from plugin.errors import OperationFailed
from plugin.node import commands
from plugin.node.commands import run


def test_output_and_exit_status_are_collected() -> None:
    done = run(["sh", "-c", "printf out; printf err >&2; exit 3"], ok_codes=(3,))
    assert (done.returncode, done.stdout, done.stderr) == (3, "out", "err")


def test_an_unexpected_exit_status_names_the_command_and_its_message() -> None:
    with pytest.raises(OperationFailed, match=r"^sh -c .* failed \(exit 5\): no such thing$") as info:
        run(["sh", "-c", "echo 'no such thing' >&2; exit 5"])
    assert info.value.details["returncode"] == 5


def test_output_that_is_not_utf8_is_replaced_not_fatal() -> None:
    assert run(["printf", "\\377label"]).stdout == "\ufffdlabel"


def test_large_output_on_both_streams_does_not_block_the_command() -> None:
    script = "head -c 300000 /dev/zero | tr '\\0' a; head -c 300000 /dev/zero | tr '\\0' b >&2"
    done = run(["sh", "-c", script])
    assert (len(done.stdout), len(done.stderr)) == (300000, 300000)
    assert set(done.stdout) == {"a"} and set(done.stderr) == {"b"}


def test_a_command_that_closes_its_output_early_is_waited_for_until_it_exits() -> None:
    done = run(["sh", "-c", "exec >/dev/null 2>&1; sleep 0.3; exit 4"], ok_codes=(4,))
    assert done.returncode == 4  # the status it exits with after the sleep


def test_a_silent_command_that_outlives_its_limit_is_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = f"exec >/dev/null 2>&1; echo $$ > {pid_file}; exec sleep 30"
    with pytest.raises(OperationFailed, match=r"did not finish within 0\.2s") as info:
        run(["sh", "-c", script], timeout=0.2)
    assert info.value.details["timed_out"] is True
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # killed and reaped


def test_without_pidfds_the_same_answers_come_from_pythons_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(commands.os, "pidfd_open", no_pidfd)
    done = run(["sh", "-c", "printf out; printf err >&2; exit 3"], ok_codes=(3,))
    assert (done.returncode, done.stdout, done.stderr) == (3, "out", "err")
    with pytest.raises(OperationFailed, match=r"did not finish within 0\.2s"):
        run(["sleep", "30"], timeout=0.2)


def test_a_missing_tool_is_named() -> None:
    with pytest.raises(OperationFailed, match="no-such-tool-here is not installed on this node"):
        run(["no-such-tool-here"])

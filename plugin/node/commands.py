"""Running host commands: one function, an argument list, a timeout, never a shell.

Every command the node runs for block devices and mounts goes through :func:`run` (or a
runner with the same signature that a test passes in), so a reader can audit them in one
place and no user input ever meets a shell. Logs and errors show a command through
:func:`format_command`, which redacts user options.
"""

from __future__ import annotations

import logging
import os
import selectors
import subprocess
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from plugin.errors import (
    OperationFailed,
)
from plugin.node.commandlines import (
    loggable_command,
)

log = logging.getLogger(__name__)


COMMAND_TIMEOUT = 120.0
# fsck and resize of a whole filesystem
MKFS_TIMEOUT = 1800.0
# mkfs gets a time limit that grows with the device: a floor plus seconds per GiB
MKFS_TIMEOUT_FLOOR = 60.0
MKFS_SECONDS_PER_GIB = 2.0


@dataclass(frozen=True)
class CommandResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[..., CommandResult]


def format_command(args: Sequence[str]) -> str:
    """The command as logs and errors show it: user options redacted, see ``loggable_command``."""
    return loggable_command(args)


def mkfs_timeout(
    size_bytes: int, floor: float = MKFS_TIMEOUT_FLOOR, per_gib: float = MKFS_SECONDS_PER_GIB
) -> float:
    """How long mkfs may take on a device of ``size_bytes``: ``floor`` plus ``per_gib`` per GiB."""
    return floor + per_gib * max(size_bytes, 0) / (1 << 30)


def run(
    args: Sequence[str], *, timeout: float = COMMAND_TIMEOUT, ok_codes: Collection[int] = (0,)
) -> CommandResult:
    """Run one command without a shell; any other exit code raises OperationFailed.

    The C locale keeps messages stable for the few places that read them, and stdin is
    closed so a tool that wants to ask a question fails instead of hanging.
    """
    argv = tuple(args)
    cmd = format_command(argv)
    log.debug("running %s", cmd)
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{cmd} failed: {argv[0]} is not installed on this node", command=cmd) from exc
    except OSError as exc:
        raise OperationFailed(f"{cmd} could not be started: {exc.strerror}", command=cmd) from exc
    with proc:
        try:
            stdout, stderr = _output_and_exit(proc, timeout)
        except subprocess.TimeoutExpired as exc:
            proc.kill()
            proc.wait()
            raise OperationFailed(
                f"{cmd} did not finish within {timeout:g}s", command=cmd, timed_out=True
            ) from exc
        except BaseException:
            proc.kill()
            raise
    return checked(CommandResult(argv, proc.returncode, _text(stdout), _text(stderr)), ok_codes)


def _output_and_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes]:
    """Everything the command wrote, once it has exited and closed its output.

    The exit is watched through a pidfd, so the caller wakes when it happens. Python's own
    wait with a time limit polls instead, sleeping 1 ms and more between looks, and a
    command that closes its output just before it exits (most do) would often cost that
    sleep. A kernel without pidfds (before 5.3) gets Python's wait.
    """
    try:
        exit_fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        return proc.communicate(timeout=timeout)
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    try:
        with selectors.DefaultSelector() as selector:
            for fd in (*chunks, exit_fd):
                selector.register(fd, selectors.EVENT_READ)
            while len(selector.get_map()) > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 65536) if key.fd != exit_fd else b""
                    if data:
                        chunks[key.fd].append(data)
                    else:  # output closed, or the command has exited
                        selector.unregister(key.fd)
    finally:
        os.close(exit_fd)
    proc.wait()  # it has exited: this only collects the status
    return b"".join(chunks[proc.stdout.fileno()]), b"".join(chunks[proc.stderr.fileno()])


def _text(output: bytes) -> str:
    """A command's output as text; bytes that are not UTF-8 (a label, a path) are replaced, not fatal."""
    return output.decode("utf-8", errors="replace")


def one_line(text: str) -> str:
    """A tool's multi-line message as one line for an error sentence."""
    return "; ".join(line.strip().rstrip(".") for line in text.splitlines() if line.strip())


def checked(result: CommandResult, ok_codes: Collection[int] = (0,)) -> CommandResult:
    """Turn an unexpected exit code into OperationFailed naming the command and its stderr."""
    if result.returncode in ok_codes:
        return result
    cmd = format_command(result.args)
    detail = one_line(result.stderr) or one_line(result.stdout) or "no output"
    raise OperationFailed(
        f"{cmd} failed (exit {result.returncode}): {detail}",
        command=cmd,
        returncode=result.returncode,
        stderr=result.stderr,
    )

"""Running host commands: one function, an argument list, a timeout, never a shell.

Every command the node runs for block devices and mounts goes through :func:`run` (or a
runner with the same signature that a test passes in), so a reader can audit them in one
place and no user input ever meets a shell. Logs and errors show a command through
:func:`format_command`, which redacts user options.
"""

from __future__ import annotations

import logging
import os
import subprocess
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
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{cmd} failed: {argv[0]} is not installed on this node", command=cmd) from exc
    except subprocess.TimeoutExpired as exc:
        raise OperationFailed(
            f"{cmd} did not finish within {timeout:g}s", command=cmd, timed_out=True
        ) from exc
    except OSError as exc:
        raise OperationFailed(f"{cmd} could not be started: {exc.strerror}", command=cmd) from exc
    return checked(CommandResult(argv, proc.returncode, proc.stdout, proc.stderr), ok_codes)


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

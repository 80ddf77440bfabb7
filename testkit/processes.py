"""Stopping child processes that tests and benchmarks started, the same way everywhere.

Every helper that runs a daemon (emulator, dockerd, Docker plugin, CSI driver) stops it
with SIGTERM first, so its clean shutdown path is what the tests exercise, and only
kills it when it does not stop in time, so a hung child never outlives the test run.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Callable
from typing import Any


def terminate(
    proc: subprocess.Popen[Any], timeout: float, before_kill: Callable[[], None] | None = None
) -> bool:
    """SIGTERM and wait up to ``timeout``; one still running then gets ``before_kill`` and SIGKILL.

    Returns True when the process had exited or stopped on SIGTERM, False when it had to be
    killed, so a caller can fail a test over a shutdown that hangs.
    """
    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if before_kill is not None:
            before_kill()
        proc.kill()
        proc.wait()
        return False
    return True


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(
    proc: subprocess.Popen[Any],
    ready: Callable[[], bool],
    what: str,
    log_tail: Callable[[], str],
    stop: Callable[[], object],
    timeout: float,
    interval: float = 0.1,
    transient: tuple[type[BaseException], ...] = (),
) -> None:
    """Poll ``ready`` every ``interval`` s until it says True: how every child daemon is awaited.

    ``ready`` raising one of ``transient`` counts as "not yet" (the socket is not there,
    the connection is refused). When ``proc`` exits first, or ``timeout`` passes, ``stop``
    cleans up and a RuntimeError names ``what``, the exit status and the tail of its log.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = proc.poll()
        if status is not None:
            stop()
            raise RuntimeError(f"{what} exited early (status {status}):\n{log_tail()}")
        try:
            if ready():
                return
        except transient:
            pass
        time.sleep(interval)
    stop()
    raise RuntimeError(f"{what} did not answer within {timeout:g}s:\n{log_tail()}")

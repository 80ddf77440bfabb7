"""How every child daemon of the tests and benchmarks is awaited: ready, exited early, or never ready."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from testkit.processes import terminate, wait_ready


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    terminate(proc, timeout=10)


def test_ready_returns_once_the_probe_says_so_and_stops_nothing(sleeper: subprocess.Popen[bytes]) -> None:
    answers = iter([ConnectionRefusedError("not listening"), False, True])
    stopped: list[bool] = []

    def probe() -> bool:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    wait_ready(sleeper, probe, "the daemon", lambda: "", lambda: stopped.append(True), 30, 0.01, (OSError,))
    assert stopped == []
    assert sleeper.poll() is None


def test_an_early_exit_is_named_with_its_status_and_log() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    stopped: list[bool] = []
    with pytest.raises(RuntimeError, match=r"the daemon exited early \(status 3\):\nbad config") as raised:
        wait_ready(proc, lambda: False, "the daemon", lambda: "bad config", lambda: stopped.append(True), 60)
    assert stopped == [True]
    assert "bad config" in str(raised.value)


def test_a_daemon_never_ready_is_stopped_and_its_log_quoted(sleeper: subprocess.Popen[bytes]) -> None:
    def stop() -> None:
        terminate(sleeper, timeout=10)

    with pytest.raises(RuntimeError, match=r"the daemon did not answer within 0.2s:\nstill loading"):
        wait_ready(sleeper, lambda: False, "the daemon", lambda: "still loading", stop, 0.2, 0.01)
    assert sleeper.poll() is not None


def test_an_unexpected_probe_error_is_not_swallowed(sleeper: subprocess.Popen[bytes]) -> None:
    def probe() -> bool:
        raise KeyError("answer without the expected field")

    with pytest.raises(KeyError):
        wait_ready(sleeper, probe, "the daemon", lambda: "", lambda: None, 30, 0.01, (OSError,))

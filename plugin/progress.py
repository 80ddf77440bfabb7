"""Long operations a user waits on (a clone, an attach, a large mkfs), made visible.

A call wraps such work in :func:`long_operation`. While it runs, the operation is listed
for its subject (the volume's resource name, or a device path) so a front end can show it
(``docker volume inspect`` Status says the volume is still being prepared), and every
``interval`` seconds one log line says what is still going on, for how long, and the
latest detail the work reported (LINSTOR's clone status, say). Work that ends within the
first interval logs nothing extra. The registry is per process, like the metrics.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from plugin.observability import log_fields

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0
_settings = {"interval": DEFAULT_INTERVAL}


def set_interval(seconds: float) -> None:
    """Seconds between progress lines of one operation (daemon flag ``--progress-interval``)."""
    if seconds <= 0:
        raise ValueError("the progress interval must be greater than zero")
    _settings["interval"] = seconds


@dataclass
class Operation:
    """One long operation under way."""

    subject: str
    what: str
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)
    detail: str = ""

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def describe(self) -> str:
        """``cloning from pvc-1 for 12 s (LINSTOR clone status: COPYING)``."""
        text = f"{self.what} for {self.elapsed():.0f} s"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass
class _Schedule:
    """When an operation's next "still working" line is due, and whether one was logged."""

    op: Operation
    every: float
    due: float
    reported: bool = False


# One reporter thread serves every operation of the process. A thread per operation cost
# about 0.2 ms of CPU to start and join on every create, although nearly all of them end
# long before their first line is due.
_lock = threading.Condition()
_running: dict[int, _Schedule] = {}  # id(op) -> its schedule
_reporter: list[threading.Thread] = []
_wakes_at = [float("inf")]  # when the reporter wakes next; an earlier line wakes it sooner


def under_way(subject: str) -> list[Operation]:
    """The operations running for a subject (names compare without case, as LINSTOR's do)."""
    key = subject.upper()
    with _lock:
        return [s.op for s in _running.values() if s.op.subject.upper() == key]


def _report_forever() -> None:
    """Log "still working" for each operation whose line is due, then sleep until the next is."""
    with _lock:
        while True:
            now = time.monotonic()
            for schedule in list(_running.values()):
                if schedule.due <= now:
                    op = schedule.op
                    schedule.due = now + schedule.every
                    # Logged under the lock, so an operation that ends meanwhile logs its
                    # end line after this one, never before.
                    log_fields(
                        log,
                        logging.INFO,
                        "still working",
                        volume=op.subject,
                        operation=op.what,
                        elapsed_s=round(op.elapsed(), 1),
                        detail=op.detail or None,
                    )
                    schedule.reported = True
            _wakes_at[0] = min((s.due for s in _running.values()), default=float("inf"))
            _lock.wait(None if not _running else max(0.0, _wakes_at[0] - time.monotonic()))


def _forget_reporter() -> None:
    """A forked child has no reporter thread (and maybe a lock held at the fork): start afresh."""
    global _lock
    _lock = threading.Condition()
    _reporter.clear()
    _running.clear()
    _wakes_at[0] = float("inf")


os.register_at_fork(after_in_child=_forget_reporter)


def _register(op: Operation, every: float) -> None:
    with _lock:
        due = op.started + every
        _running[id(op)] = _Schedule(op, every, due)
        if not _reporter or not _reporter[0].is_alive():  # first use, or it died with an error
            _reporter[:] = [threading.Thread(target=_report_forever, name="progress", daemon=True)]
            _reporter[0].start()
        elif due < _wakes_at[0]:
            _lock.notify()


@contextmanager
def long_operation(subject: str, what: str, *, interval: float | None = None) -> Iterator[Operation]:
    """List the operation while it runs and log its progress every ``interval`` seconds."""
    op = Operation(subject=subject, what=what)
    _register(op, interval if interval is not None else _settings["interval"])
    outcome = "done"
    try:
        yield op
    except BaseException:
        outcome = "failed"
        raise
    finally:
        with _lock:
            schedule = _running.pop(id(op), None)
        if schedule is not None and schedule.reported:  # a line that said "still" gets its end, too
            log_fields(
                log,
                logging.INFO,
                f"long operation {outcome}",
                volume=subject,
                operation=what,
                elapsed_s=round(op.elapsed(), 1),
            )

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


#: Guards the registry; the reporter waits on it for the next operation due a line.
_due = threading.Condition(threading.Lock())
#: id(operation) -> (operation, interval, when its next line is due)
_running: dict[int, tuple[Operation, float, float]] = {}
#: Operations that have had a "still working" line (their end gets one too).
_reported: set[int] = set()
_reporter: list[threading.Thread] = []


def under_way(subject: str) -> list[Operation]:
    """The operations running for a subject (names compare without case, as LINSTOR's do)."""
    key = subject.upper()
    with _due:
        return [op for op, _, _ in _running.values() if op.subject.upper() == key]


def _report_forever() -> None:
    """The one reporter thread: a line for each operation whose interval has passed, then wait.

    One shared thread, not one per operation: starting and joining a thread around every
    mkfs or attach cost milliseconds on the node path a pod waits on, for lines that a
    quick operation never needs. Lines are written under the registry's lock, so an
    operation's end, logged after it leaves the registry, always follows its last line.
    """
    with _due:
        while True:
            now = time.monotonic()
            for key, (op, every, due) in list(_running.items()):
                if due > now:
                    continue
                _running[key] = (op, every, due + every)
                _reported.add(key)
                log_fields(
                    log,
                    logging.INFO,
                    "still working",
                    volume=op.subject,
                    operation=op.what,
                    elapsed_s=round(op.elapsed(), 1),
                    detail=op.detail or None,
                )
            nearest = min((due for _, _, due in _running.values()), default=None)
            _due.wait(None if nearest is None else max(nearest - time.monotonic(), 0.0))


@contextmanager
def long_operation(subject: str, what: str, *, interval: float | None = None) -> Iterator[Operation]:
    """List the operation while it runs and log its progress every ``interval`` seconds."""
    op = Operation(subject=subject, what=what)
    every = interval if interval is not None else _settings["interval"]
    key = id(op)
    with _due:
        _running[key] = (op, every, op.started + every)
        if not _reporter:
            _reporter.append(threading.Thread(target=_report_forever, name="progress", daemon=True))
            _reporter[0].start()
        _due.notify()  # its first line may be due before the one the reporter waits for
    outcome = "done"
    try:
        yield op
    except BaseException:
        outcome = "failed"
        raise
    finally:
        with _due:
            _running.pop(key, None)
            reported = key in _reported
            _reported.discard(key)
        if reported:  # a line that said "still" gets its end, too
            log_fields(
                log,
                logging.INFO,
                f"long operation {outcome}",
                volume=subject,
                operation=what,
                elapsed_s=round(op.elapsed(), 1),
            )

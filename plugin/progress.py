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


_lock = threading.Lock()
_running: dict[int, Operation] = {}


def under_way(subject: str) -> list[Operation]:
    """The operations running for a subject (names compare without case, as LINSTOR's do)."""
    key = subject.upper()
    with _lock:
        return [op for op in _running.values() if op.subject.upper() == key]


@contextmanager
def long_operation(subject: str, what: str, *, interval: float | None = None) -> Iterator[Operation]:
    """List the operation while it runs and log its progress every ``interval`` seconds."""
    op = Operation(subject=subject, what=what)
    every = interval if interval is not None else _settings["interval"]
    finished = threading.Event()
    reported = threading.Event()

    def report() -> None:
        while not finished.wait(every):
            reported.set()
            log_fields(
                log,
                logging.INFO,
                "still working",
                volume=subject,
                operation=what,
                elapsed_s=round(op.elapsed(), 1),
                detail=op.detail or None,
            )

    ticker = threading.Thread(target=report, name=f"progress-{subject}", daemon=True)
    with _lock:
        _running[id(op)] = op
    ticker.start()
    outcome = "done"
    try:
        yield op
    except BaseException:
        outcome = "failed"
        raise
    finally:
        finished.set()
        ticker.join()
        with _lock:
            _running.pop(id(op), None)
        if reported.is_set():  # a line that said "still" gets its end, too
            log_fields(
                log,
                logging.INFO,
                f"long operation {outcome}",
                volume=subject,
                operation=what,
                elapsed_s=round(op.elapsed(), 1),
            )

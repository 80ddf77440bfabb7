"""Per-volume single flight: a second operation on a busy volume is refused, not queued.

The CSI spec lets a plugin answer ABORTED when an operation for the same volume is
already pending; the CO retries with backoff. Queuing instead would pile up threads
behind a slow LINSTOR call and let retries of the same request run twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from plugin.errors import Busy


class InFlight:
    """A set of keys currently being worked on, safe across threads."""

    def __init__(self, what: str = "volume") -> None:
        self._what = what
        self._lock = threading.Lock()
        self._busy: dict[str, str] = {}

    @contextmanager
    def hold(self, key: str, operation: str) -> Iterator[None]:
        """Hold ``key`` for the duration of the block; raise Busy if someone else holds it."""
        with self._lock:
            current = self._busy.get(key)
            if current is not None:
                raise Busy(
                    f"an operation ({current}) on {self._what} {key!r} is already in progress; retry later",
                    key=key,
                )
            self._busy[key] = operation
        try:
            yield
        finally:
            with self._lock:
                self._busy.pop(key, None)

    def busy(self) -> dict[str, str]:
        with self._lock:
            return dict(self._busy)

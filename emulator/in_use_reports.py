"""In-use as the controller knows it: the satellite's last report, not a live look.

A satellite tells the controller about a device being opened or closed when DRBD's events
reach it; the controller answers ``state.in_use`` and its 997 checks from that report. So
right after an unmount a delete can still be refused, and right after an open a delete can
still pass the check. The emulator models that lag: a change of the live state becomes the
reported state once it has been seen for ``delay`` seconds (``--in-use-report-seconds``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

#: The default lag between an open or close and the controller knowing it.
DEFAULT_DELAY_S = 0.5


class InUseReports:
    """Per device (backing file): the reported state and a change waiting to be reported."""

    def __init__(self, delay: float = DEFAULT_DELAY_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (reported value, when a different live value was first seen, or None)
        self._state: dict[str, tuple[bool, float | None]] = {}

    def seed(self, key: str, value: bool = False) -> None:
        """A device just set up: the satellite's first report is that nobody has it open."""
        with self._lock:
            self._state[key] = (value, None)

    def forget(self, key: str) -> None:
        with self._lock:
            self._state.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._state.clear()

    def report(self, key: str, live: bool) -> bool:
        """The reported value, given the live value just seen."""
        now = self._clock()
        with self._lock:
            reported, since = self._state.get(key, (live, None))
            if live == reported:
                self._state[key] = (reported, None)
                return reported
            since = now if since is None else since
            if now - since >= self.delay:
                self._state[key] = (live, None)
                return live
            self._state[key] = (reported, since)
            return reported

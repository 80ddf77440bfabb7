"""Whether a LINSTOR controller answers: the readiness fact both daemons report.

Kept apart from the volume service so a daemon can answer its readiness probe as soon as
its socket listens, before the rest of the core is imported and built.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from plugin.errors import Unavailable, VolumeError

if TYPE_CHECKING:
    from plugin.linstor.client import LinstorClient


def controller_reachable(client: LinstorClient) -> bool:
    """One cheap read; any answer, even an odd one, means a controller is there."""
    try:
        client.controller_version()
    except Unavailable:
        return False
    except VolumeError:
        return True  # it answered, even if oddly
    return True


class Reachability:
    """``check()`` shared and remembered the way a readiness probe needs it.

    A "yes" is reused for ``max_age`` seconds, so frequent probes stay cheap. A "no" is never
    reused: the next call asks again, so readiness flips as soon as the controller answers
    rather than when a cached "no" expires. Calls that arrive while a check is under way wait
    for its answer instead of starting checks of their own (an unreachable controller can take
    the whole connect timeout, and each caller would otherwise add one).
    """

    def __init__(
        self, check: Callable[[], bool], max_age: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self._max_age = max_age
        self._clock = clock
        self._changed = threading.Condition()
        self._running = False
        self._round = 0  # counts finished checks, so waiters know theirs is done
        self._answer = False
        self._yes_at: float | None = None

    def __call__(self) -> bool:
        with self._changed:
            if self._yes_at is not None and self._clock() - self._yes_at < self._max_age:
                return True
            if self._running:
                waiting_for = self._round
                while self._round == waiting_for:
                    self._changed.wait()
                return self._answer
            self._running = True
        answer = False
        try:
            answer = bool(self._check())
        finally:
            with self._changed:
                self._answer = answer
                self._yes_at = self._clock() if answer else None
                self._running = False
                self._round += 1
                self._changed.notify_all()
        return answer

"""Which resource definitions have a mutation in flight, so its host work can run without the state lock.

Every request reads and changes the emulator's objects under one state lock, but host commands
(losetup, blkid, mkfs, copies) can take long: a slow ``mkfs`` must not hang every other caller.
A mutating request therefore first *reserves* the resource definitions it touches. A second
mutation of a reserved definition waits until the first is done, as a controller serialises
the changes of one resource; mutations of other definitions, and every read, go on (a read
sees the change in progress). Holding its reservation, a request drops the state lock around
its host commands (:meth:`Reservations.outside_lock`) and takes it back to record the result.

While a definition is reserved the state file keeps it as it was last saved (see
:meth:`emulator.state.Saver.save`), so a crash in the middle of a request leaves the state from
before that request, and the start-up sweep removes whatever host objects the request had made.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

T = TypeVar("T")


class Reservations:
    """Per-definition reservations over the emulator's state lock (an RLock the caller holds)."""

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._changed = threading.Condition(lock)
        #: definition key -> thread that reserved it
        self._owner: dict[str, int] = {}
        self._local = threading.local()

    # -------------------------------------------------------------- all of these need the state lock

    def held(self) -> set[str]:
        """Keys reserved by any request (their saved form must not change yet)."""
        return set(self._owner)

    def mine(self) -> set[str]:
        keys: set[str] = getattr(self._local, "keys", set())
        return keys

    def acquire(self, keys: Iterable[str] | None, existing: Callable[[], Iterable[str]]) -> None:
        """Wait until no other request holds any of ``keys``, then reserve them.

        ``None`` stands for every definition (a group-wide change): it waits until no other
        reservation is left and reserves every definition that exists then.
        """
        me = threading.get_ident()
        while True:
            others = {k for k, owner in self._owner.items() if owner != me}
            wanted = set(existing()) if keys is None else set(keys)
            if not (others if keys is None else wanted & others):
                break
            self._changed.wait()
        for key in wanted:
            self._owner[key] = me
        self._local.keys = self.mine() | wanted

    def claim(self, key: str) -> None:
        """Add a definition this request has just created (its name was not known up front)."""
        if self.mine() and key not in self._owner:
            self._owner[key] = threading.get_ident()
            self._local.keys = self.mine() | {key}

    def release(self) -> None:
        me = threading.get_ident()
        for key in self.mine():
            if self._owner.get(key) == me:
                del self._owner[key]
        self._local.keys = set()
        self._local.delay = 0.0
        self._changed.notify_all()

    def wait_idle(self) -> None:
        """Wait until no request has a reservation (for changes that may touch any definition)."""
        while self._owner:
            self._changed.wait()

    def set_delay(self, seconds: float) -> None:
        """Injected latency before each host command of this request (fault injection)."""
        self._local.delay = seconds

    def outside_lock(self, fn: Callable[..., T], *args: object) -> T:
        """Run host work of a reserved definition with the state lock released.

        Without a reservation (start-up, reset, unit tests calling handlers directly) the work
        runs under the lock as before. The lock is released once: the dispatcher takes it once.
        """
        if not self.mine():
            return fn(*args)
        delay = getattr(self._local, "delay", 0.0)
        self._lock.release()
        try:
            if delay:
                time.sleep(delay)
            return fn(*args)
        finally:
            self._lock.acquire()

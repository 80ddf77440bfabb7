"""One lock per key (a volume, a device, a path), made on first use and dropped when unused.

Two ways to use a key:

- :meth:`KeyedLocks.lock` waits for the key: work on one volume or device is serialised
  (the volume service's steps, the Docker plugin's Mount and Unmount, check-then-mkfs);
- :meth:`KeyedLocks.hold` refuses a busy key with :class:`~plugin.errors.Busy` instead of
  queueing (CSI's single flight: the spec lets a plugin answer ABORTED while an operation on
  the same volume is pending, and the CO retries with backoff; queueing would pile threads
  up behind a slow LINSTOR call and run a retried request twice).

Entries vanish when their last user leaves, so a long-running daemon does not keep a lock
for every volume it ever saw.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager

from plugin.errors import Busy


class KeyedLocks:
    """Locks and single-flight holds by key, safe across threads."""

    def __init__(self, what: str = "volume", normalize: Callable[[Hashable], Hashable] | None = None) -> None:
        self._what = what
        self._normalize = normalize or (lambda key: key)
        self._guard = threading.Lock()
        self._locks: dict[Hashable, tuple[threading.Lock, int]] = {}
        self._holds: dict[Hashable, str] = {}

    @contextmanager
    def lock(self, key: Hashable) -> Iterator[None]:
        """Wait for ``key``, hold it for the block, and forget it when nobody else wants it."""
        key = self._normalize(key)
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    @contextmanager
    def hold(self, key: Hashable, operation: str) -> Iterator[None]:
        """Hold ``key`` for the block; raise Busy naming the running operation if it is held."""
        normal = self._normalize(key)
        with self._guard:
            current = self._holds.get(normal)
            if current is not None:
                raise Busy(
                    f"an operation ({current}) on {self._what} {key!r} is already in progress; retry later",
                    key=str(key),
                )
            self._holds[normal] = operation
        try:
            yield
        finally:
            with self._guard:
                self._holds.pop(normal, None)

    def busy(self) -> dict[Hashable, str]:
        """The keys held right now and the operation holding each."""
        with self._guard:
            return dict(self._holds)

    def in_use(self) -> int:
        """How many keys have a lock right now (held or waited for)."""
        with self._guard:
            return len(self._locks)

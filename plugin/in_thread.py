"""A call started at once in a thread of its own, for a read that need not wait for another.

Two REST reads that do not depend on each other cost two round trips one after the other;
started together they cost about one. The call runs in a copy of the caller's context (its
deadline, :mod:`plugin.volumes.sync_wait`), so it is bounded as the caller's own would be.
A caller that does not need the result after all (it failed on the other read first, or
stopped listing) waits for the call with :meth:`InThread.drop` and forgets its answer or
error, so no read outlives the request that made it.

The thread is one kept from an earlier call when one is idle: starting a new thread costs
about 0.3 ms after a quiet spell on a small VM, on the critical path of a pod start, and
waking a waiting one a fraction of that. A thread idle for :data:`IDLE_SECONDS` ends, and
there is always a new one when none is idle, so calls never queue behind each other. The
caller waits until the call has begun, as it would for a new thread: it then holds the
interpreter lock until its request is on the wire. A caller that went on at once would
keep the lock through CPU-bound work (a page of a listing being converted) and hold the
read back by up to the interpreter's switch interval (5 ms).
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")

#: How long a kept thread waits for its next call before it ends.
IDLE_SECONDS = 60.0

_Job = Callable[[], None]


class _Worker:
    """A daemon thread that runs the calls handed to it, and ends after a quiet minute."""

    def __init__(self, pool: _Workers) -> None:
        self._pool = pool
        self._jobs: queue.SimpleQueue[tuple[_Job, str]] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="in-thread", daemon=True).start()

    def hand(self, job: _Job, name: str) -> None:
        self._jobs.put((job, name))

    def _serve(self) -> None:
        me = threading.current_thread()
        while True:
            try:
                job, name = self._jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                if self._pool.retire(self):
                    return
                continue  # taken for a call just now: it is on its way
            me.name = name
            job()
            me.name = "in-thread"
            self._pool.idle(self)


class _Workers:
    """The idle threads, most recently used first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []

    def run(self, job: _Job, name: str) -> None:
        with self._lock:
            worker = self._idle.pop() if self._idle else None
        (worker or _Worker(self)).hand(job, name)

    def idle(self, worker: _Worker) -> None:
        with self._lock:
            self._idle.append(worker)

    def retire(self, worker: _Worker) -> bool:
        """Whether ``worker`` may end: False when a call has just taken it."""
        with self._lock:
            if worker in self._idle:
                self._idle.remove(worker)
                return True
            return False

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)


_WORKERS = _Workers()


class InThread(Generic[T]):
    """``call()`` running in a daemon thread named ``name``; :meth:`result` waits for it."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._answer: T | None = None
        self._error: BaseException | None = None
        self._began = threading.Event()
        self._ended = threading.Event()
        context = contextvars.copy_context()
        _WORKERS.run(lambda: context.run(self._run, call), name)
        self._began.wait()

    def _run(self, call: Callable[[], T]) -> None:
        self._began.set()
        try:
            self._answer = call()
        except BaseException as exc:  # handed to the caller, raised where it asks for the result
            self._error = exc
        finally:
            self._ended.set()

    def done(self) -> bool:
        """Whether the call has ended (its result would not make the caller wait)."""
        return self._ended.is_set()

    def drop(self) -> None:
        """Wait for the call to end, and forget its answer or error: it was not needed."""
        self._ended.wait()
        self._answer = self._error = None

    def result(self) -> T:
        """What the call returned, once it has; its error raised here instead."""
        self._ended.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        answer, self._answer = self._answer, None
        return answer  # type: ignore[return-value]  # set by _run whenever no error was

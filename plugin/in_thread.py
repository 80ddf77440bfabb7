"""A call started at once in a thread of its own, for a read that need not wait for another.

Two REST reads that do not depend on each other cost two round trips one after the other;
started together they cost about one. The call runs in a copy of the caller's context (its
deadline, :mod:`plugin.volumes.sync_wait`), so it is bounded as the caller's own would be.
A caller that does not need the result after all (it failed on the other read first, or
stopped listing) waits for the call with :meth:`InThread.drop` and forgets its answer or
error, so no read outlives the request that made it.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class InThread(Generic[T]):
    """``call()`` running in a daemon thread named ``name``; :meth:`result` waits for it."""

    def __init__(self, call: Callable[[], T], name: str) -> None:
        self._answer: T | None = None
        self._error: BaseException | None = None
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._run, call), name=name, daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], T]) -> None:
        try:
            self._answer = call()
        except BaseException as exc:  # handed to the caller, raised where it asks for the result
            self._error = exc

    def done(self) -> bool:
        """Whether the call has ended (its result would not make the caller wait)."""
        return not self._thread.is_alive()

    def drop(self) -> None:
        """Wait for the call to end, and forget its answer or error: it was not needed."""
        self._thread.join()
        self._answer = self._error = None

    def result(self) -> T:
        """What the call returned, once it has; its error raised here instead."""
        self._thread.join()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        answer, self._answer = self._answer, None
        return answer  # type: ignore[return-value]  # set by _run whenever no error was

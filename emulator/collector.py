"""The cyclic garbage collector paused while a read builds and sends its answer.

A list answer for 10,000 volumes is hundreds of thousands of new dicts and lists that
live until the answer is sent. While they are being made, CPython counts them as
survivors and runs full collections that walk the whole state as well (every definition,
resource and property map), several times per answer: at 10,000 volumes that was a
fifth to a third of a list call's time, and it grows faster than the list. The answer's
objects form no reference cycles, so reference counting frees them either way; pausing
the collector during reads only moves cyclic garbage made by other threads meanwhile to
the next collection. Nothing an answer says depends on it.

Reads overlap (one thread per connection), so the pause is counted: the collector runs
again when the last read ends, and only if it ran before the first one began.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_readers = 0
_was_enabled = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside the block (nor in any other thread meanwhile)."""
    global _readers, _was_enabled
    with _lock:
        if _readers == 0:
            _was_enabled = gc.isenabled()
            gc.disable()
        _readers += 1
    try:
        yield
    finally:
        with _lock:
            _readers -= 1
            if _readers == 0 and _was_enabled:
                gc.enable()


def readers() -> int:
    """How many reads hold the pause now (for tests)."""
    with _lock:
        return _readers

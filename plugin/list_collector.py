"""The cyclic collector paused while a daemon reads a long list from LINSTOR.

Reading 10,000 volumes parses pages of LINSTOR's JSON whose objects live until the page
is converted, and collects the converted entries until the list ends. CPython counts all of
them as survivors and runs full collections over them, more of them the longer the list:
at 10,000 volumes that was a fifth of the driver's CPU for a ListVolumes, and nothing at
1,000. None of it is cyclic garbage (reference counting frees every page as the next one
is read), so a list read pauses the collector; cyclic garbage other threads make meanwhile
waits for the next collection after the read.

Reads overlap (one thread per request), so the pause is counted: the collector runs again
when the last list read ends, and only if it ran before the first one began.
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
def collector_paused_for_list() -> Iterator[None]:
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


def list_readers() -> int:
    """How many list reads hold the pause now (for tests)."""
    with _lock:
        return _readers

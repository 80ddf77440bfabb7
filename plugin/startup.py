"""Daemon start-up without the garbage collector's passes over what start-up loads.

Importing a daemon's libraries (gRPC, protobuf descriptors, requests, prometheus_client)
makes tens of thousands of objects that live as long as the process, and almost no
garbage. The cyclic collector would traverse them again and again while they pile up (a
full pass each time the heap grew by a quarter), all of it CPU spent before the daemon is ready.
The daemons' entry modules load their libraries, and their ``main`` builds the daemon,
inside :func:`collector_paused`; at its end what was made is frozen (``gc.freeze``: kept
out of all later passes, as for a pre-fork server) and the collector runs again as usual.
The price is that the few hundred cyclic garbage objects start-up makes stay allocated.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block; what it made is frozen at its end.

    Re-enabling without the freeze would only defer the work: the first pass after the block
    would traverse everything the block made. Nested use is safe: only the outermost block
    freezes and turns the collector back on, and a collector that was off stays off.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.freeze()
            gc.enable()

"""Daemon start-up without the garbage collector's passes over what start-up loads.

Importing a daemon's libraries (gRPC, protobuf descriptors, requests, prometheus_client)
allocates a few hundred thousand objects that live as long as the process and makes almost
no garbage. Each few hundred allocations trigger a pass of the cyclic collector, which
finds nothing; at start those passes are about a tenth of the CPU from exec to ready. The
daemons' entry modules load their libraries, and their ``main`` builds the daemon, with the
collector paused; it runs again, as usual, as soon as the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """No automatic garbage collection inside the block; as it was again afterwards.

    Nested use is safe: only the outermost block turns the collector back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

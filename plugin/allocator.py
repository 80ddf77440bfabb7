"""The C allocator set up, at a daemon's start, to keep less freed memory.

glibc serves an allocation of 128 KiB or more with a memory mapping of its own and unmaps
it on free, but each time such a mapped block is freed it raises that threshold to the
block's size (up to 32 MiB). A daemon's first long list frees large blocks (the text of a
page of LINSTOR's answer, 1.6 MiB for 2,000 resource definitions; the buffer of a kept
ListVolumes listing), so from then on blocks of that size came from the heaps of the request
threads instead and, once freed, mostly stayed there: 4 MiB more resident memory in the CSI
driver after 10,000 volumes were listed. ``mallopt(M_MMAP_THRESHOLD)`` fixes the threshold
(it also ends the adjustment), so large blocks stay mappings and freeing one returns it. The
cost is a map and an unmap per large block, a few of them per REST page.

Smaller blocks (a response's 10 KiB read chunks, protobuf and gRPC buffers) come from the
heap ("arena") of the thread that asks, and glibc gives every new thread an arena of its own
up to eight per core. The request threads that served a long list each kept the free space
between their blocks that stayed: 2.2 MiB in the CSI driver's thread arenas after 10,000
volumes were listed. With ``M_ARENA_MAX`` 2 the threads share two arenas, which reuse each
other's free space: 0.9 MiB. The threads rarely allocate at the same time (Python code holds
the interpreter lock), so sharing costs no measurable time.

Elsewhere than on glibc (musl has no such threshold) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

#: malloc.h: the ``mallopt`` parameters for the mmap threshold and the number of arenas.
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
#: glibc's own initial threshold, kept from being raised.
MMAP_THRESHOLD = 128 * 1024
#: the main heap and one for all other threads
ARENA_MAX = 2
#: what a daemon sets, in this order
DAEMON_SETTINGS = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_ARENA_MAX, ARENA_MAX))


def _glibc() -> Any | None:
    """The process's C library if it is glibc (the one that has ``gnu_get_libc_version``)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def tune_malloc(settings: tuple[tuple[int, int], ...] = DAEMON_SETTINGS, libc: Any | None = None) -> bool:
    """Apply ``settings`` (``mallopt`` parameter, value); False where any was not possible.

    Called once at start, before the daemon's threads exist. ``libc`` is for tests.
    """
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    applied = True
    for param, value in settings:
        if libc.mallopt(ctypes.c_int(param), ctypes.c_int(value)) != 1:
            log.debug("the C library did not take mallopt(%d, %d)", param, value)
            applied = False
    return applied

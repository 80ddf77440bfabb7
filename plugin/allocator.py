"""The C allocator told, at a daemon's start, to give large freed blocks back to the system.

glibc serves an allocation of 128 KiB or more with a memory mapping of its own and unmaps
it on free, but each time such a mapped block is freed it raises that threshold to the
block's size (up to 32 MiB). A daemon's first long list frees large blocks (the text of a
page of LINSTOR's answer, 1.6 MiB for 2,000 resource definitions; the buffer of a kept
ListVolumes listing), so from then on blocks of that size came from the heaps of the request
threads instead and, once freed, mostly stayed there: 4 MiB more resident memory in the CSI
driver after 10,000 volumes were listed. ``mallopt(M_MMAP_THRESHOLD)`` fixes the threshold
(it also ends the adjustment), so large blocks stay mappings and freeing one returns it. The
cost is a map and an unmap per large block, a few of them per REST page.

Elsewhere than on glibc (musl has no such threshold) nothing is changed.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any

log = logging.getLogger(__name__)

#: malloc.h: the ``mallopt`` parameter for the mmap threshold.
M_MMAP_THRESHOLD = -3
#: glibc's own initial threshold, kept from being raised.
MMAP_THRESHOLD = 128 * 1024


def _glibc() -> Any | None:
    """The process's C library if it is glibc (the one that has ``gnu_get_libc_version``)."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return None
    return libc


def keep_large_blocks_mapped(threshold: int = MMAP_THRESHOLD, libc: Any | None = None) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes; False where that was not possible.

    Called once at start, before the daemon's threads exist. ``libc`` is for tests.
    """
    libc = libc if libc is not None else _glibc()
    if libc is None:
        return False
    if libc.mallopt(ctypes.c_int(M_MMAP_THRESHOLD), ctypes.c_int(threshold)) != 1:
        log.debug("the C library did not take mallopt(M_MMAP_THRESHOLD, %d)", threshold)
        return False
    return True

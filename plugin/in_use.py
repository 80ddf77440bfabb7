"""Waiting out LINSTOR's in-use reports, which lag the node.

A controller answers ``state.in_use`` and its 997 refusals from what the satellite last
reported, and a satellite reports an open or close a moment after it happens. Right after
an unmount, a delete can therefore still be refused as "in use". Like LINBIT's CSI driver,
which polls until no replica is in use before it deletes, the plugin gives such a report a
bounded moment to clear before it calls the volume busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from plugin.errors import InUse

#: How long an "in use" report may lag a close before the plugin believes it.
SETTLE_SECONDS = 5.0
_INTERVAL = 0.2

T = TypeVar("T")


def wait_until_free(
    busy_nodes: Callable[[], list[str]],
    settle: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """Poll ``busy_nodes`` until it is empty or ``settle`` seconds passed; the last answer."""
    deadline = clock() + settle
    busy = busy_nodes()
    while busy and clock() < deadline:
        sleep(_INTERVAL)
        busy = busy_nodes()
    return busy


def retry_while_in_use(
    action: Callable[[], T],
    settle: float = SETTLE_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``action``; while LINSTOR refuses it as in use (997), retry for ``settle`` seconds."""
    deadline = clock() + settle
    while True:
        try:
            return action()
        except InUse:
            if clock() >= deadline:
                raise
            sleep(_INTERVAL)

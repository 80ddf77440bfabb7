"""Waiting out replicas that are still syncing, within the caller's deadline.

Right after a volume on a thick pool is made, its replicas are ``Inconsistent`` until DRBD's
initial sync is done, and a replica can be ``Outdated`` after a node came back. LINSTOR then
refuses a resize or a clone (974, ``FAIL_NOT_ALL_UPTODATE``) and a snapshot (979,
``FAIL_SNAPSHOT_NOT_UPTODATE``). Such a refusal is temporary: the call is tried again with a
growing pause, as long as the caller's deadline allows (a CSI call carries one; without one
a default budget applies), and then refused with a sentence that names each replica and its
state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from plugin.errors import FailedPrecondition, VolumeError
from plugin.linstor import retcodes as rc

T = TypeVar("T")

#: Without a deadline from the caller (the Docker plugin, the CLI), wait at most this long.
DEFAULT_BUDGET_SECONDS = 60.0
#: Left for the answer after the last try, so a refusal arrives before the caller gives up.
MARGIN_SECONDS = 1.0
FIRST_PAUSE = 0.25
MAX_PAUSE = 4.0
SYNC_CODES = frozenset({rc.FAIL_NOT_ALL_UPTODATE, rc.FAIL_SNAPSHOT_NOT_UPTODATE})

_deadline: ContextVar[float | None] = ContextVar("caller_deadline", default=None)


@contextmanager
def caller_deadline(seconds: float | None) -> Iterator[None]:
    """Run a request with the caller's time limit (seconds from now; None: no limit given)."""
    token = _deadline.set(None if seconds is None else time.monotonic() + seconds)
    try:
        yield
    finally:
        _deadline.reset(token)


def time_left(default: float = DEFAULT_BUDGET_SECONDS) -> float:
    deadline = _deadline.get()
    if deadline is None:
        return default
    return max(0.0, deadline - time.monotonic())


def is_sync_refusal(exc: VolumeError) -> bool:
    return rc.code_of(exc) in SYNC_CODES


def retry_while_syncing(
    action: Callable[[], T],
    what: str,
    lagging: Callable[[], list[tuple[str, str]]],
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """``action()``; a 974/979 refusal is retried with back-off until the time is up."""
    end = time.monotonic() + time_left()
    pause = FIRST_PAUSE
    while True:
        try:
            return action()
        except VolumeError as exc:
            if not is_sync_refusal(exc):
                raise
            left = end - time.monotonic() - MARGIN_SECONDS
            if left <= 0:
                raise _refusal(what, lagging, exc) from None
            sleep(min(pause, left))
            pause = min(pause * 2, MAX_PAUSE)


def _refusal(what: str, lagging: Callable[[], list[tuple[str, str]]], exc: VolumeError) -> FailedPrecondition:
    try:
        states = lagging()
    except VolumeError:
        states = []
    where = ", ".join(f"the replica on {node} is {state}" for node, state in states)
    return FailedPrecondition(
        f"cannot {what} yet: {where or 'a replica is not UpToDate'} (DRBD is still syncing it); "
        "retry when every replica is UpToDate",
        replicas=dict(states),
        **exc.details,
    )

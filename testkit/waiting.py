"""Wait for a condition instead of sleeping for a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T],
    timeout: float = 15.0,
    interval: float = 0.05,
    what: str = "the condition",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Exceptions of the ``ignore`` types count as "not yet". After ``timeout`` seconds an
    AssertionError names ``what`` (and the last ignored exception, if any).
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = condition()
            if result:
                return result
        except ignore as exc:
            last = exc
        if time.monotonic() >= deadline:
            detail = f" (last: {last!r})" if last is not None else ""
            raise AssertionError(f"{what} did not happen within {timeout:g}s{detail}")
        time.sleep(interval)

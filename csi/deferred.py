"""Services built on first use, so the socket can answer Probe before the core is loaded.

Importing the Controller, Node and GroupController services pulls in nearly the whole core
(parameters, placement, backups, snapshots, node operations), which takes longer than
everything the readiness probe needs. The driver registers stand-ins for them instead; a
background warm-up right after the socket listens builds the real ones, and a call that
arrives earlier builds them itself or waits for the warm-up to finish. Either way the call
is served by the real service: nothing answers differently, only sooner or later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Once(Generic[T]):
    """``build()`` run at most once successfully; concurrent callers wait for the one running.

    A failed build is not remembered: the caller sees its error, and the next call tries
    again (a missing module stays missing, but a transient failure does not stick).
    """

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None
        self._built = False

    @property
    def built(self) -> bool:
        return self._built

    def get(self) -> T:
        if self._built:
            return self._value  # type: ignore[return-value]
        with self._lock:
            if not self._built:
                self._value = self._build()
                self._built = True
        return self._value  # type: ignore[return-value]


class DeferredServicer:
    """Stands for a gRPC servicer; each method call is passed to the real one, built on first use.

    The generated ``add_*Servicer_to_server`` functions read one attribute per RPC when
    they register; each attribute here is a forwarder, so registration needs nothing built.
    """

    def __init__(self, servicer: Once[Any]) -> None:
        self._servicer = servicer

    def __getattr__(self, method: str) -> Callable[[Any, Any], Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        servicer = self._servicer

        def forward(request: Any, context: Any) -> Any:
            return getattr(servicer.get(), method)(request, context)

        forward.__name__ = method
        return forward

"""Injected latency and per-endpoint errors for reliability tests (the ``/_emu/`` control API).

Kept apart from the REST handlers so a request path can ask "is a fault due?" in one
call before any real work happens, and so the rules themselves are unit-testable.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from emulator import retcodes as rc

#: When injected latency applies: before a request is handled, before each host command of a
#: mutation (with the state lock released, so a kill lands in the middle of the work), or after
#: the change is saved and before the answer is sent.
PHASES = ("request", "host", "answer")


@dataclass
class LatencyRule:
    ms: float
    paths: re.Pattern[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"ms": self.ms, "paths": self.paths.pattern if self.paths else None}


@dataclass
class ErrorRule:
    method: str | None
    path_regex: re.Pattern[str]
    status: int
    ret_code: int
    message: str
    remaining: int  # < 0: forever

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "path_regex": self.path_regex.pattern,
            "status": self.status,
            "ret_code": self.ret_code,
            "remaining": self.remaining,
        }


class Faults:
    """The current fault rules; thread-safe, consulted once per request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.latency: dict[str, LatencyRule] = {}
        self.errors: list[ErrorRule] = []

    def set_latency(self, ms: float, paths: str | None, phase: str = "request") -> None:
        """One rule per phase; ``ms`` 0 clears the phase's rule."""
        if phase not in PHASES:
            raise ValueError(f"unknown latency phase {phase!r}; use one of: {', '.join(PHASES)}")
        rule = LatencyRule(ms, re.compile(paths) if paths else None) if ms > 0 else None
        with self._lock:
            if rule is None:
                self.latency.pop(phase, None)
            else:
                self.latency[phase] = rule

    def latency_for(self, path: str, phase: str = "request") -> float:
        with self._lock:
            rule = self.latency.get(phase)
        if rule is None or (rule.paths is not None and not rule.paths.search(path)):
            return 0.0
        return rule.ms / 1000.0

    def add_error(
        self,
        method: str | None,
        path_regex: str,
        status: int,
        ret_code: int,
        count: int,
        message: str = "",
    ) -> ErrorRule:
        rule = ErrorRule(
            method.upper() if method else None,
            re.compile(path_regex),
            status,
            ret_code,
            message or "Injected failure (emulator fault injection).",
            count,
        )
        with self._lock:
            self.errors.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self.latency.clear()
            self.errors.clear()

    def take_error(self, method: str, path: str) -> tuple[int, list[dict[str, Any]]] | None:
        """The injected answer for this request, consuming one use of the matching rule."""
        with self._lock:
            for rule in self.errors:
                if rule.method not in (None, method) or not rule.path_regex.search(path):
                    continue
                if rule.remaining == 0:
                    continue
                if rule.remaining > 0:
                    rule.remaining -= 1
                entry = {"ret_code": rule.ret_code, "message": rule.message, "created_at": rc.now_iso()}
                if rc.is_error(rule.ret_code):
                    entry["error_report_ids"] = [rc.new_error_report_id()]
                self.errors = [r for r in self.errors if r.remaining != 0]
                return rule.status, [entry]
        return None

    def describe(self) -> dict[str, Any]:
        with self._lock:
            lat = self.latency.get("request")
            return {
                "latency": lat.to_json() if lat else None,
                "latency_by_phase": {phase: rule.to_json() for phase, rule in self.latency.items()},
                "errors": [r.to_json() for r in self.errors],
            }


def error_ret_code(code: int) -> int:
    """A bare code (e.g. 997) becomes an error ret_code; a full one is kept."""
    if -(1 << 63) <= code < 0 or code >= (1 << 32):
        return rc.to_signed(code)
    return rc.to_signed(rc.MASK_ERROR | code)

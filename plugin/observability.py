"""Structured logs and Prometheus metrics shared by every daemon.

Each daemon calls :func:`setup_logging` once and wraps every request in
:func:`observe_request`, which writes one JSON log line (method, volume, result,
duration) and feeds the latency histogram and the error counter. The LINSTOR client
records its calls with :func:`record_linstor_call`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

OPERATION_SECONDS = Histogram(
    "linstor_plugin_operation_seconds",
    "Latency of front-end operations (CSI RPCs, Docker endpoints).",
    ["frontend", "operation"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
OPERATION_ERRORS = Counter(
    "linstor_plugin_operation_errors_total",
    "Front-end operations that failed, by error code.",
    ["frontend", "operation", "code"],
)
LINSTOR_REQUESTS = Counter(
    "linstor_plugin_linstor_requests_total",
    "REST calls made to the LINSTOR controller, by endpoint template and outcome.",
    ["method", "endpoint", "outcome"],
)
LINSTOR_REQUEST_SECONDS = Histogram(
    "linstor_plugin_linstor_request_seconds",
    "Latency of REST calls to the LINSTOR controller.",
    ["method", "endpoint"],
)
MOUNTED_VOLUMES = Gauge(
    "linstor_plugin_mounted_volumes",
    "Volumes this daemon currently has mounted on the node.",
    ["frontend"],
)

_REDACTED = "***"
MAX_ERROR_CHARS = 1000
_SECRET_KEYS = ("secret", "password", "passphrase", "token", "key")


class JsonFormatter(logging.Formatter):
    """One JSON object per line; extra fields passed as ``extra={"fields": {...}}``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(redact(fields))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, sort_keys=False)


def redact(value: Any) -> Any:
    """Replace the values of secret-looking keys, recursively, so they never reach a log."""
    if isinstance(value, dict):
        return {
            k: (_REDACTED if isinstance(k, str) and any(s in k.lower() for s in _SECRET_KEYS) else redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


class TextFormatter(logging.Formatter):
    """``time level logger: msg key=value ...``: the same fields as the JSON lines, for people."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = getattr(record, "fields", None)
        if not isinstance(fields, dict):
            return line
        parts = [line.split("\n", 1)[0]]
        for key, value in redact(fields).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        rest = line.split("\n", 1)[1:]  # a traceback stays below the line
        return " ".join(parts) + ("\n" + rest[0] if rest else "")


def setup_logging(level: str = "info", json_output: bool = True) -> None:
    """Configure the root logger once: JSON lines on stderr (plain text when asked)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_output else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def log_fields(logger: logging.Logger, level: int, msg: str, **fields: Any) -> None:
    logger.log(level, msg, extra={"fields": fields})


@contextmanager
def observe_request(
    logger: logging.Logger, frontend: str, operation: str, volume: str | None = None, **fields: Any
) -> Iterator[dict[str, Any]]:
    """Time one request, log one line for it and record metrics.

    The caller may add fields to the yielded dict. An exception is recorded as the
    result (its class name is the error code), its sentence as ``error``, and re-raised
    for the front end to map.
    """
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    result = "ok"
    try:
        yield extra
    except BaseException as exc:
        result = type(exc).__name__
        extra.setdefault("error", error_sentence(exc))
        raise
    finally:
        duration = time.perf_counter() - start
        OPERATION_SECONDS.labels(frontend, operation).observe(duration)
        if result != "ok":
            OPERATION_ERRORS.labels(frontend, operation, result).inc()
        log_fields(
            logger,
            logging.INFO if result == "ok" else logging.WARNING,
            operation,
            frontend=frontend,
            method=operation,
            volume=volume,
            result=result,
            duration_ms=round(duration * 1000, 2),
            **fields,
            **extra,
        )


def error_sentence(exc: BaseException) -> str:
    """What went wrong, for the log line: the error's own sentence, bounded."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def preregister(frontend: str, operations: Iterable[str], codes: Iterable[str]) -> None:
    """Make every (operation) and (operation, code) series exist at zero before the first call,
    so rates and alerts work from the start instead of seeing "no data"."""
    codes = tuple(codes)
    for operation in operations:
        OPERATION_SECONDS.labels(frontend, operation)
        for code in codes:
            OPERATION_ERRORS.labels(frontend, operation, code)


def record_linstor_call(method: str, endpoint: str, outcome: str, seconds: float) -> None:
    LINSTOR_REQUESTS.labels(method, endpoint, outcome).inc()
    LINSTOR_REQUEST_SECONDS.labels(method, endpoint).observe(seconds)


_metrics_lock = threading.Lock()
_metrics_started: set[tuple[str, int]] = set()


def start_metrics_server(port: int, addr: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> None:
    """Serve ``/metrics`` on ``addr:port``; port 0 or a negative port turns it off."""
    if port <= 0:
        return
    with _metrics_lock:
        if (addr, port) in _metrics_started:
            return
        start_http_server(port, addr=addr, registry=registry)
        _metrics_started.add((addr, port))

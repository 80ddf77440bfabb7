"""Prometheus metrics of one emulator server, served at ``/metrics`` on its own listener.

Each server gets its own :class:`CollectorRegistry`, so several emulators in one process
(in-process tests) never clash over metric names. Request labels carry endpoint
templates (``/v1/resource-definitions/{rd}``), never raw names, and only known HTTP
methods, so no client can grow the label set without bound. The object counts are read
from the state at scrape time instead of being kept up to date by every handler, so they
cannot drift from the state the API reports.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from emulator.core import Emulator

#: Label value for a path no route knows (a 404): raw paths never become label values.
UNMATCHED = "unmatched"
#: Label value for a request the HTTP layer could not parse at all.
MALFORMED = "malformed"
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
#: Where emulator requests spend their time: sub-millisecond reads up to mkfs and clones.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def method_label(method: str | None) -> str:
    """The method as a label value; anything but a known HTTP method is ``other``."""
    upper = (method or "").upper()
    return upper if upper in _METHODS else "other"


@dataclass(frozen=True)
class Exposition:
    """A scrape answer: the server sends it with this content type, not as JSON."""

    body: bytes
    content_type: str


class _StateCollector(Collector):
    """Counts of what the emulator holds, read at scrape time.

    Reads without the emulator's lock, so a scrape never waits behind a long mutation
    (mkfs, a clone); each ``len``/``list`` of a dict is atomic, so every count is one the
    state really had, at worst one mutation old.
    """

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def collect(self) -> Iterator[Metric]:
        definitions = list(self.emu.state.resource_definitions.values())
        counts = (
            ("resource_definitions", "Resource definitions.", len(definitions)),
            (
                "resources",
                "Resources (diskful and diskless replicas) on all nodes.",
                sum(len(rd.resources) for rd in definitions),
            ),
            (
                "snapshots",
                "Snapshots, one per definition and snapshot name.",
                sum(len(rd.snapshots) for rd in definitions),
            ),
            ("attached_devices", "Volumes with a block device attached on this host.", len(self.emu.devices)),
        )
        for name, doc, value in counts:
            yield GaugeMetricFamily(f"linstor_emulator_{name}", doc, value=value)


class EmulatorMetrics:
    """The metrics of one server: request counts and latency, injected faults, object counts."""

    def __init__(self, emu: Emulator) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "linstor_emulator_requests_total",
            "Requests answered, by method, endpoint template and HTTP status.",
            ["method", "endpoint", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "linstor_emulator_request_seconds",
            "Time from reading a request to answering it, injected latency included.",
            ["method", "endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.faults = Counter(
            "linstor_emulator_injected_faults_total",
            "Faults injected through the control API that hit a request or the listener.",
            ["kind"],
            registry=self.registry,
        )
        self.registry.register(_StateCollector(emu))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)

    def observe(self, method: str | None, endpoint: str, status: int, seconds: float | None) -> None:
        """Count one answer; ``seconds`` is None when the request never got far enough to time."""
        label = method_label(method)
        self.requests.labels(label, endpoint, str(status)).inc()
        if seconds is not None:
            self.latency.labels(label, endpoint).observe(seconds)

    def fault(self, kind: str) -> None:
        """One injected fault took effect: ``latency``, ``error`` or ``outage``."""
        self.faults.labels(kind).inc()

    def exposition(self, accept: str) -> Exposition:
        """The scrape answer, in the format the scraper asked for (text or OpenMetrics)."""
        encoder, content_type = choose_encoder(accept)
        return Exposition(encoder(self.registry), content_type)

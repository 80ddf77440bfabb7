"""REST calls and wall time per VolumeService operation, beside a bare-Session floor.

Starts a private LINSTOR emulator (local node plus two virtual nodes, real loop devices,
so it needs root), then for each iteration runs create (resource group already known),
attach, expand, snapshot, snapshot delete, detach and delete through the
:class:`VolumeService`. Every REST call the service makes is recorded; the same calls
are then replayed, on a twin volume, through a bare ``requests.Session`` with no logic
around them. The difference is what the plugin's client and service add on top of the
controller's own time.

    sudo .venv/bin/python benchmarks/core_bench.py [--iterations 20]

Writes ``benchmarks/out/core.json`` and the ``## Core`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import RESULTS, start_emulator, write_json, write_results  # noqa: E402
from plugin.config import Config  # noqa: E402
from plugin.linstor.client import LinstorClient  # noqa: E402
from plugin.linstor.direct import Reply  # noqa: E402
from plugin.params.model import VolumeParams  # noqa: E402
from plugin.volumes.service import VolumeService  # noqa: E402
from testkit.emulator import reset_and_stop  # noqa: E402

MIB = 1024 * 1024
OPERATIONS = ("create", "attach", "expand", "snapshot", "delete_snapshot", "detach", "delete")
Call = dict[str, Any]


class Recorder:
    """Wraps the client's ``exchange`` (where every request leaves) so each one is kept for replay."""

    def __init__(self, client: LinstorClient) -> None:
        self.calls: list[Call] = []
        self._client = client
        self._send = client.exchange
        client.exchange = self._record  # type: ignore[method-assign]

    def _record(self, method: str, base: str, path: str, params: Any, body: Any) -> Reply:
        self.calls.append({"method": method, "url": base + path, "params": params, "json": body})
        return self._send(method, base, path, params, body)

    def stop(self) -> None:
        """Send the client's requests directly again."""
        self._client.exchange = self._send  # type: ignore[method-assign]

    def take(self) -> list[Call]:
        calls, self.calls = self.calls, []
        return calls


def replay(session: requests.Session, calls: list[Call], old: str, new: str) -> float:
    """Send the recorded calls for volume ``old`` again for ``new``; the floor's wall time."""
    twin = json.loads(json.dumps(calls).replace(old, new))
    started = time.perf_counter()
    for call in twin:
        session.request(call["method"], call["url"], params=call["params"], json=call["json"], timeout=120)
    return time.perf_counter() - started


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    p95 = ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))]
    return {
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.mean(ms), 2),
    }


def operation_steps(
    service: VolumeService, volume: str, node: str, params: VolumeParams
) -> list[tuple[str, Callable[[], object]]]:
    snapshot = f"snap-{volume}"
    return [
        ("create", lambda: service.create_volume(volume, 16 * MIB, params)),
        ("attach", lambda: service.attach(volume, node)),
        ("expand", lambda: service.expand_volume(volume, 20 * MIB)),
        ("snapshot", lambda: service.create_snapshot(volume, snapshot)),
        ("delete_snapshot", lambda: service.delete_snapshot(f"{volume}/{snapshot}")),
        ("detach", lambda: service.detach(volume, node)),
        ("delete", lambda: service.delete_volume(volume)),
    ]


def run(iterations: int) -> dict[str, Any]:
    local = socket.gethostname().split(".")[0]
    with tempfile.TemporaryDirectory(prefix="core-bench-") as tmp:
        emulator = start_emulator(
            Path(tmp), nodes=("node-b", "node-c"), extra_args=("--log-level", "WARNING")
        )
        url = emulator.url
        try:
            config = Config(controllers=(url,), node_name=local, config_file=None)
            client = LinstorClient(config)
            service = VolumeService(client, config)
            recorder = Recorder(client)
            floor = requests.Session()
            # ext4 made by LINSTOR on the local node; attach goes to another node, so it is
            # the full diskless path (make-available, device path, marker) and detach removes it.
            params = VolumeParams(place_count=1, fs_type="ext4", nodes=(local,))

            first = time.perf_counter()
            service.create_volume("bench-warmup", 16 * MIB, params)  # makes and remembers the group
            first_create = {"seconds": time.perf_counter() - first, "rest_calls": len(recorder.take())}
            service.delete_volume("bench-warmup")
            recorder.take()

            samples: dict[str, dict[str, list[float]]] = {
                op: {"service": [], "floor": []} for op in OPERATIONS
            }
            rest_calls: dict[str, set[int]] = {op: set() for op in OPERATIONS}
            last: dict[str, tuple[list[Call], str]] = {}
            for i in range(iterations):
                mine, twin = f"bench-s-{i:04d}", f"bench-f-{i:04d}"
                steps = operation_steps(service, mine, "node-b", params)
                for op, action in steps:
                    # Alternate who goes first, so neither side always runs right after the
                    # other's write (the controller may still be settling it).
                    floor_first = i % 2 == 1 and op in last
                    if floor_first:
                        calls, previous = last[op]
                        samples[op]["floor"].append(replay(floor, calls, previous, twin))
                    started = time.perf_counter()
                    action()
                    samples[op]["service"].append(time.perf_counter() - started)
                    calls = recorder.take()
                    rest_calls[op].add(len(calls))
                    last[op] = (calls, mine)
                    if not floor_first:
                        samples[op]["floor"].append(replay(floor, calls, mine, twin))
            version = client.controller_version()
        finally:
            reset_and_stop([emulator], reset_timeout=60)

    operations = {}
    for op in OPERATIONS:
        service_stats = summary(samples[op]["service"])
        floor_stats = summary(samples[op]["floor"])
        operations[op] = {
            "rest_calls": max(rest_calls[op]),
            "service": service_stats,
            "floor": floor_stats,
            "overhead_median_ms": round(service_stats["median_ms"] - floor_stats["median_ms"], 2),
        }
    return {
        "benchmark": "core",
        "iterations": iterations,
        "controller": f"emulator {version.version} (REST API {version.rest_api_version})",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "system": platform.platform(),
        },
        "first_create_new_group": {
            "rest_calls": first_create["rest_calls"],
            "ms": round(first_create["seconds"] * 1000, 2),
        },
        "operations": operations,
    }


def results_section(result: dict[str, Any]) -> str:
    rows = [
        "## Core",
        "",
        f"`benchmarks/core_bench.py`, {result['iterations']} iterations against the {result['controller']} "
        "(local node plus two virtual nodes, loop devices; ext4 volume on the local node, attached diskless "
        f"to another node), Python {result['machine']['python']}, "
        f"{result['machine']['cpus']} CPUs. Wall time per VolumeService operation beside the same REST calls "
        "sent through a bare `requests.Session` (the floor; which side runs first alternates per iteration). "
        "Medians; p95 in brackets. The emulator does real loop-device work and the machine is shared, so "
        "single-digit differences either way are noise: the plugin adds no measurable time of its own.",
        "",
        "| operation | REST calls | service ms | floor ms | overhead ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for op, data in result["operations"].items():
        s, f = data["service"], data["floor"]
        rows.append(
            f"| {op.replace('_', ' ')} | {data['rest_calls']} | {s['median_ms']} ({s['p95_ms']}) "
            f"| {f['median_ms']} ({f['p95_ms']}) | {data['overhead_median_ms']} |"
        )
    first = result["first_create_new_group"]
    rows += [
        "",
        "Steady-state create (resource group already known): "
        f"**{result['operations']['create']['rest_calls']} REST calls** "
        "(spawn, then one read of the placed replicas). The first create of a parameter set in a process "
        "also looks for an existing volume of that name and ensures the resource group: "
        f"{first['rest_calls']} calls, {first['ms']} ms.",
        "",
    ]
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "core.json")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("core_bench needs root: the emulator attaches loop devices")
    result = run(max(1, args.iterations))
    write_json(result, args.out)
    write_results(results_section(result), args.results)
    print(f"steady-state create: {result['operations']['create']['rest_calls']} REST calls")
    for op, data in result["operations"].items():
        print(
            f"{op:16} calls={data['rest_calls']:2}  service={data['service']['median_ms']:8.2f} ms  "
            f"floor={data['floor']['median_ms']:8.2f} ms"
        )
    print(f"wrote {args.out} and the Core section of {args.results}")


if __name__ == "__main__":
    main()

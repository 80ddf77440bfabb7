"""The emulator's own latency, so other benchmarks can subtract it.

Starts a private emulator (local node plus two virtual nodes) on a free port and measures,
over one keep-alive ``requests.Session``:

* simple calls: controller version, node list, storage-pool view, one resource
  definition, one resource, one volume definition, a props PUT, a create+delete pair;
* listings with 2,000 resource definitions (each with one 1 GiB volume definition and one
  diskful replica on a virtual node: a sparse file, no loop device, so no root needed):
  definitions with and without volume definitions, the resource view, a filtered view and
  a 50-item page.

    .venv/bin/python benchmarks/emulator_bench.py [--iterations 200] [--definitions 2000]

Writes ``benchmarks/out/emulator.json``, prints a table, and with ``--record`` replaces the
``## Emulator`` section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
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
from testkit.emulator import reset_and_stop  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "emulator.json"


def measure(fn: Callable[[], requests.Response], n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        r = fn()
        samples.append((time.perf_counter() - t0) * 1000)
        if r.status_code >= 400:
            raise SystemExit(f"benchmark call failed: {r.status_code} {r.text[:300]}")
    samples.sort()
    return {
        "n": n,
        "median_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def run(iterations: int, definitions: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="emu-bench-") as tmp:
        emulator = start_emulator(
            Path(tmp), nodes=("node-b", "node-c"), extra_args=("--log-level", "WARNING")
        )
        base = f"{emulator.url}/v1"
        s = requests.Session()
        try:
            s.post(base + "/resource-groups", json={"name": "bench", "select_filter": {"place_count": 1}})
            # Replicas go to the virtual nodes only (sparse files, no loop devices); DRBD ports
            # are a per-node pool of 1,000, so 2,000 replicas need both virtual nodes.
            local = next(n["name"] for n in s.get(base + "/nodes").json() if n["type"] == "COMBINED")
            s.put(
                base + f"/nodes/{local}", json={"override_props": {"AutoplaceTarget": "false"}}
            ).raise_for_status()
            sf = {"place_count": 1}
            spawn = {"resource_definition_name": "pvc-00000", "volume_sizes": [1048576], "select_filter": sf}
            s.post(base + "/resource-groups/bench/spawn", json=spawn).raise_for_status()
            probe_node = s.get(base + "/resource-definitions/pvc-00000/resources").json()[0]["node_name"]
            simple: dict[str, Callable[[], requests.Response]] = {
                "GET controller/version": lambda: s.get(base + "/controller/version"),
                "GET nodes": lambda: s.get(base + "/nodes"),
                "GET view/storage-pools": lambda: s.get(base + "/view/storage-pools"),
                "GET resource-definitions/{rd}": lambda: s.get(base + "/resource-definitions/pvc-00000"),
                "GET .../volume-definitions/0": lambda: s.get(
                    base + "/resource-definitions/pvc-00000/volume-definitions/0"
                ),
                "GET .../resources/{node}": lambda: s.get(
                    base + f"/resource-definitions/pvc-00000/resources/{probe_node}"
                ),
                "PUT resource-definitions/{rd} (props)": lambda: s.put(
                    base + "/resource-definitions/pvc-00000", json={"override_props": {"Aux/bench": "1"}}
                ),
            }

            def create_delete() -> requests.Response:
                r = s.post(base + "/resource-definitions", json={"resource_definition": {"name": "tmp-rd"}})
                r.raise_for_status()
                return s.delete(base + "/resource-definitions/tmp-rd")

            simple["POST+DELETE resource-definitions"] = create_delete
            results: dict[str, Any] = {"simple": {}, "listing": {}}
            for name, fn in simple.items():
                measure(fn, min(20, iterations))  # warm-up
                results["simple"][name] = measure(fn, iterations)

            t0 = time.perf_counter()
            for i in range(1, definitions):
                body = {
                    "resource_definition_name": f"pvc-{i:05d}",
                    "volume_sizes": [1048576],
                    "select_filter": sf,
                }
                r = s.post(base + "/resource-groups/bench/spawn", json=body)
                if r.status_code >= 400:
                    raise SystemExit(f"spawn {i} failed: {r.status_code} {r.text[:500]}")
            setup_s = time.perf_counter() - t0
            results["setup"] = {
                "definitions": definitions,
                "spawn_seconds": round(setup_s, 2),
                "spawn_ms_each": round(setup_s * 1000 / definitions, 3),
            }
            listing: dict[str, Callable[[], requests.Response]] = {
                "GET resource-definitions": lambda: s.get(base + "/resource-definitions"),
                "GET resource-definitions?with_volume_definitions": lambda: s.get(
                    base + "/resource-definitions", params={"with_volume_definitions": "true"}
                ),
                "GET view/resources": lambda: s.get(base + "/view/resources"),
                "GET view/resources?resources=one": lambda: s.get(
                    base + "/view/resources", params={"resources": "pvc-00042"}
                ),
                "GET view/resources?limit=50": lambda: s.get(
                    base + "/view/resources", params={"limit": 50, "offset": 100}
                ),
            }
            n_list = max(5, iterations // 10)
            for name, fn in listing.items():
                fn()
                results["listing"][name] = measure(fn, n_list)
            sizes = {"view/resources bytes": len(s.get(base + "/view/resources").content)}
            results["listing_sizes"] = sizes
            version = s.get(base + "/controller/version").json()
        finally:
            reset_and_stop([emulator], reset_timeout=60)
    results["environment"] = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "emulator": f"{version['version']} (REST API {version['rest_api_version']})",
        "iterations": iterations,
    }
    return results


def table(results: dict[str, Any]) -> str:
    lines = ["| call | median ms | p95 ms | mean ms |", "|---|---:|---:|---:|"]
    for name, m in results["simple"].items():
        lines.append(f"| {name} | {m['median_ms']} | {m['p95_ms']} | {m['mean_ms']} |")
    setup = results["setup"]
    lines += [
        "",
        f"With {setup['definitions']} resource definitions "
        "(each one 1 GiB volume, one replica on one of the virtual nodes):",
        "",
        "| listing | median ms | p95 ms | mean ms |",
        "|---|---:|---:|---:|",
    ]
    for name, m in results["listing"].items():
        lines.append(f"| {name} | {m['median_ms']} | {m['p95_ms']} | {m['mean_ms']} |")
    return "\n".join(lines)


def record(results: dict[str, Any], path: Path = RESULTS) -> None:
    env = results["environment"]
    setup = results["setup"]
    section = (
        "## Emulator\n\n"
        f"`benchmarks/emulator_bench.py`, emulator {env['emulator']}, local node plus two virtual nodes, "
        f"one keep-alive `requests.Session`, {env['iterations']} iterations per simple call, "
        f"Python {env['python']}, "
        f"{env['cpus']} CPUs. Subtract these from other benchmarks to get the plugin's own cost.\n\n"
        f"{table(results)}\n\n"
        f"Setting up the {setup['definitions']} definitions took {setup['spawn_seconds']} s "
        f"({setup['spawn_ms_each']} ms per spawn, each one saving the state file).\n"
    )
    write_results(section, path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=200)
    p.add_argument("--definitions", type=int, default=2000)
    p.add_argument("--record", action="store_true", help="write the ## Emulator section of RESULTS.md")
    p.add_argument("--out", type=Path, default=OUT, help="the JSON to write")
    p.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md --record writes to")
    args = p.parse_args()
    results = run(args.iterations, args.definitions)
    write_json(results, args.out)
    print(table(results))
    if args.record:
        record(results, args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

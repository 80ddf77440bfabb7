"""Docker plugin latencies: List and Get with 1,000 volumes, and a full volume life cycle.

Runs the LINSTOR emulator and ``python -m docker_plugin`` as child processes on this
machine and talks to the plugin over its unix socket exactly as Docker does. The 1,000
volumes are seeded as definitions only (a resource definition with its volume
definition and the plugin's properties, no replicas), which is what List and Get read;
the life-cycle part (Create, Mount, Unmount, Remove) uses real loop devices, mkfs and
mount, so it needs root.

    sudo .venv/bin/python benchmarks/docker_bench.py [--volumes 1000] [--cycles 10]

Writes ``benchmarks/out/docker.json``. The number of LINSTOR REST calls per List comes
from the plugin's own Prometheus counter, so "List is one REST call" is measured, not assumed.
List and Get are each timed beside the same REST calls sent through a bare ``requests``
session (the floor, which side runs first alternates): the difference is the plugin's own
time (socket, WSGI app, JSON, record conversion), what is left when the controller's share,
which the plugin cannot change, is taken out. The plugin process's CPU time per call is
recorded too: it hardly depends on how loaded the machine is.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import LOCAL, cpu_seconds, start_emulator, summarize, write_json  # noqa: E402
from docker_plugin.client import PluginClient  # noqa: E402
from docker_plugin.driver import DOCKER_LIST_FILTER, DOCKER_MARKER_KEY  # noqa: E402
from plugin import volume_records as rec  # noqa: E402
from plugin.config import DEFAULT_LIST_PAGE_SIZE, Config  # noqa: E402
from plugin.linstor.client import LinstorClient  # noqa: E402
from plugin.names import resource_name_for  # noqa: E402
from plugin.params.docker import parse_docker_options  # noqa: E402
from testkit.dockerd import PluginProcess  # noqa: E402
from testkit.emulator import reset_and_stop  # noqa: E402
from testkit.processes import free_port  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "docker.json"
PHASES = ("create", "mount", "unmount", "remove")
REMOTE_OPTS = {"size": "64M", "nodes": "node-b"}


def timed(fn: Callable[[], dict[str, Any]]) -> float:
    start = time.perf_counter()
    answer = fn()
    elapsed = time.perf_counter() - start
    if answer.get("Err"):
        raise RuntimeError(f"plugin answered Err: {answer['Err']}")
    return elapsed


def linstor_calls(metrics_url: str) -> float:
    """Sum of the plugin's linstor_plugin_linstor_requests_total counter."""
    text = urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    return sum(
        float(m.group(1))
        for m in re.finditer(r"^linstor_plugin_linstor_requests_total\{[^}]*\} (\S+)$", text, re.MULTILINE)
    )


def seed(emulator_url: str, count: int) -> list[str]:
    """Create ``count`` Docker volumes as definitions only (no replicas, no devices).

    The properties are the core's own (``plugin.volume_records``), so the plugin lists and
    gets them exactly like volumes it created; only placement is skipped, which List and
    Get never look at.
    """
    config = Config(controllers=(emulator_url,), node_name=LOCAL, config_file=None)
    client = LinstorClient(config)
    params = parse_docker_options({"size": "64M", "resourcegroup": "bench-rg"})
    client.create_resource_group("bench-rg", {"place_count": 1})
    size_kib = (params.size_bytes or 0) // 1024
    names = [f"bench-{i:04d}.vol" for i in range(count)]
    for name in names:
        wanted = rec.Wanted(
            volume_id=resource_name_for(name),
            name=name,
            size_kib=size_kib,
            resource_group="bench-rg",
            fs_type=params.fs_type,
            mkfs_opts="",
            mount_opts=(),
            source=None,
            extra=((DOCKER_MARKER_KEY, "true"),),
        )
        props = {**wanted.aux_props(datetime.now(UTC)), **wanted.filesystem_props()}
        client.spawn("bench-rg", wanted.volume_id, size_kib, definition_props=props, definitions_only=True)
    return names


def plugin_cpu_seconds(plugin: PluginProcess) -> float:
    """CPU time the running plugin has used so far (see :func:`benchmarks.common.cpu_seconds`)."""
    if plugin.proc is None:
        raise RuntimeError("the Docker plugin is not running, so it has no CPU time to read")
    return cpu_seconds(plugin.proc.pid)


def list_floor(session: requests.Session, emulator_url: str) -> Callable[[], None]:
    """The one REST call behind List (up to a page of volumes), sent bare: the same query,
    Docker's marker filter and the first page, so the controller's share is the same."""
    params = {
        "with_volume_definitions": "true",
        "props": DOCKER_LIST_FILTER,
        "limit": DEFAULT_LIST_PAGE_SIZE,
        "offset": 0,
    }

    def call() -> None:
        session.get(f"{emulator_url}/v1/resource-definitions", params=params, timeout=60).json()

    return call


def get_floor(session: requests.Session, emulator_url: str, name: str) -> Callable[[], None]:
    """The two filtered REST calls behind Get, sent bare."""
    rd = resource_name_for(name)

    def call() -> None:
        base = f"{emulator_url}/v1"
        session.get(
            f"{base}/resource-definitions?with_volume_definitions=true&resource_definitions={rd}", timeout=60
        ).json()
        session.get(f"{base}/view/resources?resources={rd}", timeout=60).json()

    return call


def side_by_side(
    plugin_call: Callable[[], dict[str, Any]], floor_call: Callable[[], None], i: int
) -> tuple[float, float]:
    """(plugin seconds, floor seconds) of one round; which side goes first alternates."""
    if i % 2:
        floor = timed_plain(floor_call)
        return timed(plugin_call), floor
    plugin = timed(plugin_call)
    return plugin, timed_plain(floor_call)


def timed_plain(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plugin_time(plugin_samples: list[float], floor_samples: list[float]) -> dict[str, float]:
    """The plugin's own time: medians of the calls and of the per-round difference."""
    return {
        "floor_median_ms": round(statistics.median(floor_samples) * 1000, 2),
        "plugin_ms": round(
            statistics.median(p - f for p, f in zip(plugin_samples, floor_samples, strict=True)) * 1000, 2
        ),
    }


def cycle_calls(name: str) -> list[tuple[str, str, dict[str, Any]]]:
    """One volume's life as Docker drives it, on this node only (one local replica)."""
    return [
        ("create", "VolumeDriver.Create", {"Name": name, "Opts": {"size": "64M", "nodes": LOCAL}}),
        ("mount", "VolumeDriver.Mount", {"Name": name, "ID": "bench"}),
        ("unmount", "VolumeDriver.Unmount", {"Name": name, "ID": "bench"}),
        ("remove", "VolumeDriver.Remove", {"Name": name}),
    ]


def prestart_times(c: PluginClient, cycles: int) -> list[float]:
    """What ``docker run`` sends before the container starts; then the container's stop."""
    samples = []
    for i in range(cycles):
        steps = [
            ("VolumeDriver.Mount", {"Name": "remote", "ID": f"pre-{i}"}),
            ("VolumeDriver.Unmount", {"Name": "remote", "ID": f"pre-{i}"}),
            ("VolumeDriver.Mount", {"Name": "remote", "ID": f"run-{i}"}),
        ]
        samples.append(sum(timed(lambda m=m, b=b: c.call(m, b)) for m, b in steps))
        timed(lambda i=i: c.call("VolumeDriver.Unmount", {"Name": "remote", "ID": f"run-{i}"}))
        wait_released(c)
    return samples


def wait_released(c: PluginClient, timeout: float = 30.0) -> None:
    """Until the plugin has released every volume (the delay included), so cycles are alike."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = c.call("VolumeDriver.Get", {"Name": "remote"})["Volume"]["Status"]
        if LOCAL not in status["diskless_nodes"] and not status["mounted_on_this_node"]:
            return
        time.sleep(0.1)
    raise RuntimeError("the volume was not released in time")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--volumes", type=int, default=1000)
    ap.add_argument("--list-runs", type=int, default=30)
    ap.add_argument("--get-runs", type=int, default=200)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("docker_bench: needs root (loop devices, mkfs, mount)", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="dv-bench-") as tmp:
        base = Path(tmp)
        emu_dir = base / "emu"
        emulator = start_emulator(emu_dir, nodes=("node-b",))
        metrics_port = free_port()
        metrics_args = ("--metrics-port", str(metrics_port), "--metrics-address", "127.0.0.1")
        # Release at once, so Unmount is timed with the work it causes.
        plugin = PluginProcess(
            base / "p", emulator.url, LOCAL, extra_args=(*metrics_args, "--release-delay", "0")
        )
        lazy = PluginProcess(base / "lazy", emulator.url, LOCAL)  # the default release delay
        try:
            plugin.start()
            c = plugin.client()
            metrics = f"http://127.0.0.1:{metrics_port}/metrics"

            # The life cycle runs first: LINSTOR's default DRBD port range (7000-7999) holds
            # 1,000 resource definitions, which the seeded volumes then use up.
            phases: dict[str, list[float]] = {p: [] for p in (*PHASES, "total")}
            for i in range(args.cycles):
                total = 0.0
                for phase, method, body in cycle_calls(f"cycle-{i}"):
                    elapsed = timed(lambda m=method, b=body: c.call(m, b))
                    phases[phase].append(elapsed)
                    total += elapsed
                phases["total"].append(total)

            # docker run on a node without a replica: Mount, Unmount (image copy-up), Mount.
            timed(lambda: c.call("VolumeDriver.Create", {"Name": "remote", "Opts": REMOTE_OPTS}))
            prestart_now = prestart_times(c, args.cycles)
            plugin.stop()
            lazy.start()
            prestart_lazy = prestart_times(lazy.client(), args.cycles)
            lazy.stop()
            plugin.start()
            timed(lambda: c.call("VolumeDriver.Remove", {"Name": "remote"}))

            t0 = time.perf_counter()
            names = seed(emulator.url, args.volumes)
            seed_s = time.perf_counter() - t0

            listed = c.call("VolumeDriver.List", {})
            assert len(listed["Volumes"]) >= args.volumes, listed.get("Err")
            session = requests.Session()
            before, cpu_before = linstor_calls(metrics), plugin_cpu_seconds(plugin)
            list_pairs = [
                side_by_side(lambda: c.call("VolumeDriver.List", {}), list_floor(session, emulator.url), i)
                for i in range(args.list_runs)
            ]
            calls_per_list = (linstor_calls(metrics) - before) / args.list_runs
            list_cpu_ms = (plugin_cpu_seconds(plugin) - cpu_before) * 1000 / args.list_runs
            list_times, list_floor_times = [p for p, _ in list_pairs], [f for _, f in list_pairs]

            rng = random.Random(7)
            picks = [rng.choice(names) for _ in range(args.get_runs)]
            before, cpu_before = linstor_calls(metrics), plugin_cpu_seconds(plugin)
            get_pairs = [
                side_by_side(
                    lambda n=n: c.call("VolumeDriver.Get", {"Name": n}),
                    get_floor(session, emulator.url, n),
                    i,
                )
                for i, n in enumerate(picks)
            ]
            calls_per_get = (linstor_calls(metrics) - before) / args.get_runs
            get_cpu_ms = (plugin_cpu_seconds(plugin) - cpu_before) * 1000 / args.get_runs
            get_times, get_floor_times = [p for p, _ in get_pairs], [f for _, f in get_pairs]
        finally:
            lazy.stop()
            plugin.stop()
            reset_and_stop([emulator], reset_timeout=60)

    result = {
        "benchmark": "docker",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
        },
        "volumes": args.volumes,
        "seed_seconds": round(seed_s, 2),
        "list": {
            **summarize(list_times),
            **plugin_time(list_times, list_floor_times),
            "plugin_cpu_ms_per_request": round(list_cpu_ms, 2),
            "linstor_calls_per_request": calls_per_list,
        },
        "get": {
            **summarize(get_times),
            **plugin_time(get_times, get_floor_times),
            "plugin_cpu_ms_per_request": round(get_cpu_ms, 2),
            "linstor_calls_per_request": calls_per_get,
        },
        "docker_run_prestart": {
            "what": "Mount, Unmount, Mount of a volume with no local replica (diskless attach)",
            "release_at_once": summarize(prestart_now),
            "release_delay_default": summarize(prestart_lazy),
        },
        "lifecycle": {
            "cycles": args.cycles,
            "size": "64M",
            "replicas": 1,
            **{k: summarize(v) for k, v in phases.items()},
        },
    }
    write_json(result, args.out)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

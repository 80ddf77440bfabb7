"""How the driver and the plugin grow with the number of volumes: 100, 1,000, 10,000.

Starts a private emulator whose DRBD TCP port range holds 11,000 resources per node
(``--tcp-port-range 7000-17999``, as the controller's ``TcpPortAutoRange`` allows), the CSI
driver (``python -m csi --mode all``) and the Docker plugin (``python -m docker_plugin``) as
their own processes, and times how long each daemon takes from start to ready and how much
memory it holds at rest (``startup_bench.py``'s rounds and readiness checks: the socket
answers ``Probe`` with ready / ``Plugin.Activate`` and the health check says the controller
was reached; the median of several starts, with compiled bytecode as installed). Then, at
each size, it times:

- CSI ``ListVolumes`` paged through completely (``--page`` entries per call),
- Docker ``VolumeDriver.List``,
- CSI ``GetCapacity``,
- a CSI ``CreateVolume`` (and its ``DeleteVolume``) in the steady state,

and reads each daemon's resident memory (VmRSS) after listing. Volumes are seeded through
the REST API directly, as the core makes them (same properties, one replica on a virtual
node, raw, so no mkfs runs), which is fast and keeps the benchmark about listing.

    sudo .venv/bin/python benchmarks/scale_bench.py [--quick]   # --quick stops at 1,000

Writes ``benchmarks/out/scale.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import (  # noqa: E402
    LOCAL,
    MIB,
    host_facts,
    load_average,
    rss_mib,
    start_emulator,
    summarize,
    write_json,
)
from benchmarks.daemons import DriverProcess, medians, one_round, run_as_installed  # noqa: E402
from csi.generated import csi_pb2  # noqa: E402
from csi.testing import block_cap  # noqa: E402
from docker_plugin.driver import DOCKER_MARKER_KEY  # noqa: E402
from plugin import volume_records as rec  # noqa: E402
from plugin.config import Config  # noqa: E402
from plugin.linstor.client import LinstorClient  # noqa: E402
from plugin.names import resource_name_for  # noqa: E402
from testkit.dockerd import PluginProcess  # noqa: E402
from testkit.emulator import reset_and_stop  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "scale.json"
SEED_RG = "scale-rg"
SEED_KIB = 4096


class Seeder:
    """Makes Docker-marked raw volumes with one replica on node-b, through REST only."""

    def __init__(self, url: str) -> None:
        self.client = LinstorClient(Config(controllers=(url,), node_name=LOCAL, config_file=None))
        self.client.create_resource_group(SEED_RG, {"place_count": 1, "node_name_list": ["node-b"]})
        self.count = 0

    def up_to(self, total: int) -> float:
        start = time.perf_counter()
        while self.count < total:
            name = f"scale-{self.count:05d}.vol"
            wanted = rec.Wanted(
                volume_id=resource_name_for(name),
                name=name,
                size_kib=SEED_KIB,
                resource_group=SEED_RG,
                fs_type="ext4",
                mkfs_opts="",
                mount_opts=(),
                source=None,
                extra=((DOCKER_MARKER_KEY, "true"),),
            )
            # The records only: no FileSystem/* properties, so the emulator runs no mkfs.
            self.client.spawn(
                SEED_RG, wanted.volume_id, SEED_KIB, definition_props=wanted.aux_props(datetime.now(UTC))
            )
            self.count += 1
        return time.perf_counter() - start


def list_all(driver: DriverProcess, page: int) -> tuple[float, int, int]:
    """(seconds, entries, calls) for one complete paging of ListVolumes."""
    start = time.perf_counter()
    token, entries, calls = "", 0, 0
    while True:
        answer = driver.client.controller.ListVolumes(
            csi_pb2.ListVolumesRequest(max_entries=page, starting_token=token)
        )
        entries += len(answer.entries)
        calls += 1
        token = answer.next_token
        if not token:
            return time.perf_counter() - start, entries, calls


def timed(fn: Any, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def steady_creates(driver: DriverProcess, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        name = f"scale-create-{uuid.uuid4().hex[:8]}"
        start = time.perf_counter()
        volume = driver.client.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=name,
                capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
                volume_capabilities=[block_cap()],
            )
        ).volume
        samples.append(time.perf_counter() - start)
        driver.client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    return samples


def measure_size(
    size: int, driver: DriverProcess, plugin: PluginProcess, page: int, runs: int
) -> dict[str, Any]:
    docker = plugin.client()
    listed: list[float] = []
    for _ in range(runs):
        seconds, entries, calls = list_all(driver, page)
        if entries < size:
            raise RuntimeError(f"ListVolumes returned {entries} of {size} volumes")
        listed.append(seconds)
    docker_list = timed(lambda: docker.call("VolumeDriver.List", {}), runs)
    found = len(docker.call("VolumeDriver.List", {}).get("Volumes") or [])
    if found < size:
        raise RuntimeError(f"VolumeDriver.List returned {found} of {size} volumes")
    capacity = timed(lambda: driver.client.controller.GetCapacity(csi_pb2.GetCapacityRequest()), runs)
    creates = steady_creates(driver, runs)
    row = {
        "volumes": size,
        "csi_list_volumes_all_pages": {**summarize(listed), "pages": calls, "page_size": page},
        "docker_list": summarize(docker_list),
        "csi_get_capacity": summarize(capacity),
        "csi_create_volume": summarize(creates),
        "driver_rss_mib": rss_mib(driver.proc.pid),
        "plugin_rss_mib": rss_mib(plugin.proc.pid) if plugin.proc else None,
    }
    print(
        f"  {size:>6} volumes: ListVolumes (all pages) {row['csi_list_volumes_all_pages']['median_ms']} ms, "
        f"Docker List {row['docker_list']['median_ms']} ms, "
        f"GetCapacity {row['csi_get_capacity']['median_ms']} ms, "
        f"CreateVolume {row['csi_create_volume']['median_ms']} ms, RSS driver "
        f"{row['driver_rss_mib']} MiB, plugin {row['plugin_rss_mib']} MiB"
    )
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="stop at 1,000 volumes, 3 runs per figure")
    ap.add_argument("--sizes", default="", help="comma-separated volume counts (default 100,1000,10000)")
    ap.add_argument("--page", type=int, default=500, help="ListVolumes max_entries per call")
    ap.add_argument(
        "--list-page-size",
        type=int,
        default=0,
        help="LS_LIST_PAGE_SIZE for both daemons: volumes read from LINSTOR per REST call (default: theirs)",
    )
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("scale_bench: needs root (loop devices)", file=sys.stderr)
        return 2
    daemon_env = {"LS_LIST_PAGE_SIZE": str(args.list_page_size)} if args.list_page_size > 0 else {}
    default_sizes = [100, 1000] if args.quick else [100, 1000, 10000]
    sizes = [int(s) for s in args.sizes.split(",") if s] or default_sizes
    runs = 3 if args.quick else 5
    load_at_start = load_average()
    base = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    run_as_installed(os.environ, base / "pycache")
    emulator = start_emulator(
        base, nodes=("node-b",), extra_args=("--tcp-port-range", "7000-17999", "--log-level", "WARNING")
    )
    driver: DriverProcess | None = None
    plugin = PluginProcess(base / "p", emulator.url, LOCAL)
    rows: list[dict[str, Any]] = []
    try:
        one_round(REPO, emulator.url, base, settle=0)  # compiles the bytecode; not measured
        starts = medians([one_round(REPO, emulator.url, base, settle=1.0) for _ in range(runs)])
        driver_ready, plugin_ready = starts["driver_ready_ms"] / 1000, starts["plugin_ready_ms"] / 1000
        at_rest = {"driver_rss_mib": starts["driver_rss_mib"], "plugin_rss_mib": starts["plugin_rss_mib"]}
        print(
            f"start to ready (median of {runs}): driver {driver_ready * 1000:.0f} ms, "
            f"plugin {plugin_ready * 1000:.0f} ms; at rest: {at_rest}"
        )
        # both daemons start from a clean LS_* environment, plus the page size asked for
        driver = DriverProcess(emulator.url, base, env=daemon_env)
        plugin.start(env=daemon_env)
        steady_creates(driver, 1)  # the first create of a parameter set ensures its resource group
        seeder = Seeder(emulator.url)
        seeding: dict[int, float] = {}
        for size in sizes:
            seeding[size] = round(seeder.up_to(size), 2)
            rows.append(measure_size(size, driver, plugin, args.page, runs))
    finally:
        if driver is not None:
            driver.stop()
        plugin.stop()
        reset_and_stop([emulator], reset_timeout=300)
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "benchmark": "scale",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "runs": runs,
        "host": host_facts(load_at_start),
        "start_to_ready_ms": {
            "driver": round(driver_ready * 1000, 1),
            "plugin": round(plugin_ready * 1000, 1),
        },
        "start_to_ready_cpu_ms": {
            "driver": starts["driver_ready_cpu_ms"],
            "plugin": starts["plugin_ready_cpu_ms"],
        },
        "list_page_size": args.list_page_size or "default",
        "rss_at_rest_mib": at_rest,
        "seeding_seconds": seeding,
        "rows": rows,
    }
    write_json(result, args.out, announce=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

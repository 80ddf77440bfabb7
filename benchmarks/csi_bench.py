"""CSI driver throughput and node latency, beside what the same work costs without it.

1. CreateVolume+DeleteVolume pairs through the driver's gRPC socket at concurrency 1, 8
   and 32, with controller latency injected into the emulator (``POST /_emu/latency``),
   beside the direct-REST floor: the two REST calls one create+delete needs at least
   (spawn from a resource group, delete the definition), made with a bare
   ``requests.Session`` at the same concurrency and latency. The core's own benchmark
   numbers (``benchmarks/out/core.json``) are copied in when present.
2. NodeStage+NodePublish of a fresh, blank volume (mkfs, mount, bind mount) beside a
   plain shell script doing the same mkfs and mounts on a fresh volume's device.

    sudo .venv/bin/python benchmarks/csi_bench.py [--latency-ms 20] [--pairs 64] [--node-rounds 5]

Writes ``benchmarks/out/csi.json`` and prints a summary. Needs root (loop devices, mkfs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from csi.generated import csi_pb2  # noqa: E402
from csi.testing import CsiClient, block_cap, mount_cap, running_driver, unmount_under  # noqa: E402
from plugin.config import load_config  # noqa: E402
from plugin.linstor_client import LinstorClient  # noqa: E402
from plugin.nodeops import NodeOps  # noqa: E402
from plugin.volume_service import VolumeService  # noqa: E402
from tests.conftest import EmulatorProcess  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "csi.json"
CORE_OUT = REPO / "benchmarks" / "out" / "core.json"
LOCAL = socket.gethostname().split(".")[0] or "localhost"
MIB = 1024**2
CONCURRENCY = (1, 8, 32)
FLOOR_GROUP = "csi-bench-floor"

SHELL_STAGE_PUBLISH = """#!/bin/sh
# The node work of NodeStage+NodePublish, by hand: format, mount, bind.
set -e
dev=$1 staging=$2 target=$3
mkfs.ext4 -q "$dev"
mount -t ext4 "$dev" "$staging"
mkdir -p "$target"
mount --bind "$staging" "$target"
"""


def summarize(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def run_pairs(pairs: int, concurrency: int, one: Any) -> dict[str, Any]:
    """Run ``pairs`` calls of ``one(i)`` on ``concurrency`` threads; throughput and latency."""
    latencies: list[float] = []

    def timed(i: int) -> None:
        start = time.perf_counter()
        one(i)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(timed, range(pairs)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "pairs": pairs,
        "wall_s": round(wall, 3),
        "pairs_per_s": round(pairs / wall, 2),
        "pair_latency": summarize(latencies),
    }


def csi_create_delete(client: CsiClient, tag: str) -> Any:
    def one(i: int) -> None:
        volume = client.controller.CreateVolume(
            csi_pb2.CreateVolumeRequest(
                name=f"bench-{tag}-{i}-{uuid.uuid4().hex[:8]}",
                capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
                # raw block: no FileSystem/Type, so the emulated satellite runs no mkfs and
                # the pair costs what the floor's spawn+delete costs on the LINSTOR side
                volume_capabilities=[block_cap()],
            )
        ).volume
        client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))

    return one


def rest_floor(url: str, tag: str) -> Any:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
    session.mount("http://", adapter)

    def one(i: int) -> None:
        name = f"floor-{tag}-{i}-{uuid.uuid4().hex[:6]}"
        spawn = session.post(
            f"{url}/v1/resource-groups/{FLOOR_GROUP}/spawn",
            json={"resource_definition_name": name, "volume_sizes": [16 * 1024]},
            timeout=60,
        )
        spawn.raise_for_status()
        session.delete(f"{url}/v1/resource-definitions/{name}", timeout=60).raise_for_status()

    return one


def controller_section(
    emulator: EmulatorProcess, client: CsiClient, service: VolumeService, latency_ms: int, pairs: int
) -> dict[str, Any]:
    requests.post(
        f"{emulator.url}/v1/resource-groups",
        json={"name": FLOOR_GROUP, "select_filter": {"place_count": 1}},
        timeout=10,
    ).raise_for_status()
    # warm up both paths (resource group creation, connection pools) outside the timing
    csi_create_delete(client, "warm")(0)
    rest_floor(emulator.url, "warm")(0)
    emulator.control("latency", {"ms": latency_ms}).raise_for_status()
    rows = []
    for concurrency in CONCURRENCY:
        n = max(pairs, 2 * concurrency)
        calls_before = service.client.request_count
        driver = run_pairs(n, concurrency, csi_create_delete(client, f"c{concurrency}"))
        driver["rest_calls_per_pair"] = round((service.client.request_count - calls_before) / n, 2)
        floor = run_pairs(n, concurrency, rest_floor(emulator.url, f"c{concurrency}"))
        floor["rest_calls_per_pair"] = 2
        rows.append(
            {
                "concurrency": concurrency,
                "driver": driver,
                "rest_floor": floor,
                "driver_vs_floor": round(driver["pairs_per_s"] / floor["pairs_per_s"], 3),
            }
        )
        print(
            f"  c={concurrency:>2}: driver {driver['pairs_per_s']:>7} pairs/s "
            f"({driver['rest_calls_per_pair']} REST calls/pair), floor {floor['pairs_per_s']:>7} pairs/s"
        )
    emulator.control("latency", {"ms": 0}).raise_for_status()
    return {"latency_ms": latency_ms, "rows": rows}


def node_section(client: CsiClient, nodeops: NodeOps, rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="csi-bench-"))
    script = workdir / "stage-publish.sh"
    script.write_text(SHELL_STAGE_PUBLISH)
    driver_samples: list[float] = []
    shell_samples: list[float] = []
    try:
        for r in range(rounds):
            for how in ("driver", "shell"):
                # a fresh blank volume (block-provisioned, so nothing formatted it yet)
                volume = client.controller.CreateVolume(
                    csi_pb2.CreateVolumeRequest(
                        name=f"bench-node-{how}-{r}-{uuid.uuid4().hex[:6]}",
                        capacity_range=csi_pb2.CapacityRange(required_bytes=256 * MIB),
                        volume_capabilities=[block_cap()],
                    )
                ).volume
                vid = volume.volume_id
                ctx = dict(
                    client.controller.ControllerPublishVolume(
                        csi_pb2.ControllerPublishVolumeRequest(
                            volume_id=vid, node_id=LOCAL, volume_capability=block_cap()
                        )
                    ).publish_context
                )
                device = ctx["linstor.csi.linbit.com/device-path"]
                nodeops.wait_for_device(device)
                staging = workdir / f"{how}-{r}" / "staging"
                staging.mkdir(parents=True)
                target = workdir / f"{how}-{r}" / "target"
                cap = mount_cap(fs_type="ext4")
                start = time.perf_counter()
                if how == "driver":
                    client.node.NodeStageVolume(
                        csi_pb2.NodeStageVolumeRequest(
                            volume_id=vid,
                            staging_target_path=str(staging),
                            volume_capability=cap,
                            publish_context=ctx,
                        )
                    )
                    client.node.NodePublishVolume(
                        csi_pb2.NodePublishVolumeRequest(
                            volume_id=vid,
                            staging_target_path=str(staging),
                            target_path=str(target),
                            volume_capability=cap,
                            publish_context=ctx,
                        )
                    )
                    driver_samples.append(time.perf_counter() - start)
                else:
                    subprocess.run(["sh", str(script), device, str(staging), str(target)], check=True)
                    shell_samples.append(time.perf_counter() - start)
                assert os.path.ismount(target)
                unmount_under(str(workdir / f"{how}-{r}"), nodeops)
                client.controller.ControllerUnpublishVolume(
                    csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=LOCAL)
                )
                client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
    finally:
        unmount_under(str(workdir), nodeops)
        shutil.rmtree(workdir, ignore_errors=True)
    driver_summary, shell_summary = summarize(driver_samples), summarize(shell_samples)
    print(
        f"  NodeStage+NodePublish median {driver_summary['median_ms']} ms, "
        f"shell mkfs+mount+bind median {shell_summary['median_ms']} ms"
    )
    return {
        "rounds": rounds,
        "volume_bytes": 256 * MIB,
        "fs": "ext4",
        "driver_stage_publish": driver_summary,
        "shell_mkfs_mount_bind": shell_summary,
        "overhead_ms_median": round(driver_summary["median_ms"] - shell_summary["median_ms"], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=int, default=20, help="latency injected per LINSTOR REST call")
    parser.add_argument("--pairs", type=int, default=64, help="create+delete pairs per concurrency level")
    parser.add_argument("--node-rounds", type=int, default=5, help="fresh volumes staged+published per side")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("csi_bench: needs root (loop devices, mkfs, mount)", file=sys.stderr)
        return 1
    base = Path(tempfile.mkdtemp(prefix="csi-bench-emu-"))
    emulator = EmulatorProcess(state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b", "node-c"))
    emulator.start()
    try:
        config = load_config({"controllers": emulator.url, "node_name": LOCAL}, env={}, config_file=None)
        service = VolumeService(LinstorClient(config), config)
        nodeops = NodeOps()
        with running_driver(service, nodeops, LOCAL, workers=64) as (_driver, client):
            print(f"CreateVolume+DeleteVolume with {args.latency_ms} ms injected controller latency:")
            controller = controller_section(emulator, client, service, args.latency_ms, args.pairs)
            print("Node:")
            node = node_section(client, nodeops, args.node_rounds)
    finally:
        try:
            emulator.control("reset")
        finally:
            emulator.stop()
            shutil.rmtree(base, ignore_errors=True)
    result = {
        "benchmark": "csi",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()},
        "controller": controller,
        "node": node,
        "core_bench": json.loads(CORE_OUT.read_text()) if CORE_OUT.exists() else None,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

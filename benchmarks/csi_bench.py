"""CSI driver throughput and node latency, beside what the same work costs without it.

1. CreateVolume+DeleteVolume pairs through the driver's gRPC socket at concurrency 1, 8
   and 32, with controller latency injected into the emulator (``POST /_emu/latency``),
   beside the direct-REST floor: the exact REST calls one pair makes, recorded and
   replayed through a bare ``requests.Session`` with the core benchmark's ``Recorder``
   and ``replay``, at the same concurrency and latency, the two sides alternating in rounds
   (``--rounds``) so a change in the machine's load falls on both. DeleteVolume's own REST
   calls through the driver are counted once. Volumes are raw block, so the emulated
   satellite runs no mkfs on either side. The core benchmark's own numbers
   (``benchmarks/out/core.json``) are copied in when present.
2. NodeStage+NodePublish of a fresh, blank volume (mkfs, mount, bind mount) beside a
   plain shell script doing the same mkfs and mounts on a fresh volume's device.

    sudo .venv/bin/python benchmarks/csi_bench.py [--latency-ms 20] [--pairs 256] [--rounds 8]
        [--node-rounds 31] [--skip-node]

Writes ``benchmarks/out/csi.json`` and the ``## CSI`` section of ``benchmarks/RESULTS.md``.
Needs root (loop devices, mkfs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import node_path  # noqa: E402
from benchmarks.common import (  # noqa: E402
    LOCAL,
    MIB,
    RESULTS,
    host_facts,
    load_average,
    start_emulator,
    summarize,
    write_json,
    write_results,
)
from benchmarks.core_bench import Recorder, replay  # noqa: E402
from benchmarks.daemons import DriverProcess  # noqa: E402
from csi.generated import csi_pb2  # noqa: E402
from csi.testing import CsiClient, block_cap, unmount_under  # noqa: E402
from plugin.config import load_config  # noqa: E402
from plugin.linstor.client import LinstorClient  # noqa: E402
from plugin.node.ops import NodeOps  # noqa: E402
from plugin.params.csi import parse_csi_parameters, with_fs_type  # noqa: E402
from plugin.volumes.service import VolumeService  # noqa: E402
from testkit.emulator import EmulatorProcess, reset_and_stop  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "csi.json"
CORE_OUT = REPO / "benchmarks" / "out" / "core.json"
CONCURRENCY = (1, 8, 32)
# Replicas on a virtual node, as the core benchmark places them: no loop device is made, so
# the pairs measure the driver and LINSTOR's REST work, not the host's device handling.
PAIR_PARAMETERS = {"linstor.csi.linbit.com/nodeList": "node-b"}


def run_pairs(pairs: int, concurrency: int, one: Any, round_: int = 0) -> dict[str, Any]:
    """Run ``pairs`` calls of ``one(i)`` on ``concurrency`` threads; throughput and latency.

    ``round_`` keeps the indexes of several rounds apart (names stay unique); the raw latencies
    are returned too, for :func:`merged`.
    """
    latencies: list[float] = []

    def timed(i: int) -> None:
        start = time.perf_counter()
        one(i)
        latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(timed, range(round_ * pairs, (round_ + 1) * pairs)))
    wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "pairs": pairs,
        "wall_s": round(wall, 3),
        "pairs_per_s": round(pairs / wall, 2),
        "pair_latency": summarize(latencies),
        "latencies": latencies,
    }


def pair_volume(name: str) -> csi_pb2.CreateVolumeRequest:
    """The volume of one create+delete pair: 16 MiB raw block.

    Raw block: no FileSystem/Type, so the emulated satellite runs no mkfs and the pair costs
    what the floor's spawn+delete costs on the LINSTOR side.
    """
    return csi_pb2.CreateVolumeRequest(
        name=name,
        capacity_range=csi_pb2.CapacityRange(required_bytes=16 * MIB),
        volume_capabilities=[block_cap()],
        parameters=PAIR_PARAMETERS,
    )


def csi_create_delete(client: CsiClient, tag: str) -> Any:
    def one(i: int) -> None:
        volume = client.controller.CreateVolume(pair_volume(f"bench-{tag}-{i}-{uuid.uuid4().hex[:8]}")).volume
        client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))

    return one


def recorded_pair(service: VolumeService) -> tuple[list[Any], str]:
    """The REST calls behind one create+delete pair, recorded with the core benchmark's recorder.

    CreateVolume and DeleteVolume call exactly ``create_volume`` and ``delete_volume`` of the
    core, so recording those (for a raw block volume of the same size) gives the driver's
    REST sequence; the driver's own REST counter confirms the count.
    """
    recorder = Recorder(service.client)
    try:
        name = "bench-template-pair"
        params = with_fs_type(parse_csi_parameters(PAIR_PARAMETERS), None)
        service.create_volume(name, 16 * MIB, params)  # makes the resource group, not recorded
        service.delete_volume(name)
        recorder.take()
        volume = service.create_volume(name, 16 * MIB, params)
        service.delete_volume(volume.id)
        return recorder.take(), volume.id
    finally:
        recorder.stop()


def rest_floor(calls: list[Any], old: str, tag: str) -> Any:
    """The same REST calls for a new name through a bare Session per thread (core_bench's replay)."""
    local = threading.local()

    def one(i: int) -> None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        replay(local.session, calls, old, f"floor-{tag}-{i}-{uuid.uuid4().hex[:6]}")

    return one


def merged(runs: list[dict[str, Any]], latencies: list[float]) -> dict[str, Any]:
    """Rounds of :func:`run_pairs` as one run: their pairs over their summed wall time."""
    pairs, wall = sum(r["pairs"] for r in runs), sum(r["wall_s"] for r in runs)
    return {
        "concurrency": runs[0]["concurrency"],
        "pairs": pairs,
        "rounds": len(runs),
        "wall_s": round(wall, 3),
        "pairs_per_s": round(pairs / wall, 2),
        "pair_latency": summarize(latencies),
    }


def side_by_side(
    n: int, rounds: int, concurrency: int, driver_one: Any, floor_one: Any, driver_process: DriverProcess
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The driver and the floor in alternating rounds (each side first in every other round), so
    a change in the machine's load during the run falls on both sides alike."""
    per_round = max(concurrency, n // rounds)
    runs: dict[str, list[dict[str, Any]]] = {"driver": [], "floor": []}
    latencies: dict[str, list[float]] = {"driver": [], "floor": []}
    calls = cpu = 0.0
    for r in range(rounds):
        for side in ("driver", "floor") if r % 2 == 0 else ("floor", "driver"):
            if side == "driver":
                calls_before, cpu_before = driver_process.rest_calls(), driver_process.cpu_seconds()
            done = run_pairs(per_round, concurrency, driver_one if side == "driver" else floor_one, r)
            if side == "driver":
                calls += driver_process.rest_calls() - calls_before
                cpu += driver_process.cpu_seconds() - cpu_before
            runs[side].append(done)
            latencies[side].extend(done.pop("latencies"))
    driver, floor = merged(runs["driver"], latencies["driver"]), merged(runs["floor"], latencies["floor"])
    driver["rest_calls_per_pair"] = round(calls / driver["pairs"], 2)
    driver["cpu_ms_per_pair"] = round(cpu * 1000 / driver["pairs"], 2)
    driver["cpu_busy_fraction"] = round(cpu / driver["wall_s"], 3)  # 1.0 = one CPU fully busy
    return driver, floor


def driver_delete_calls(client: CsiClient, driver_process: DriverProcess) -> float:
    """REST calls of one DeleteVolume through the driver in the steady state (its own counter)."""
    volume = client.controller.CreateVolume(pair_volume(f"bench-delete-{uuid.uuid4().hex[:8]}")).volume
    before = driver_process.rest_calls()
    client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=volume.volume_id))
    return driver_process.rest_calls() - before


def controller_section(
    emulator: EmulatorProcess,
    client: CsiClient,
    service: VolumeService,
    driver_process: DriverProcess,
    latency_ms: int,
    pairs: int,
    rounds: int = 4,
) -> dict[str, Any]:
    csi_create_delete(client, "warm")(0)  # the driver's first create also ensures the group
    calls, old = recorded_pair(service)
    delete_calls = driver_delete_calls(client, driver_process)
    emulator.control("latency", {"ms": latency_ms}).raise_for_status()
    rows = []
    for concurrency in CONCURRENCY:
        n = max(pairs, 2 * concurrency)
        driver, floor = side_by_side(
            n,
            rounds,
            concurrency,
            csi_create_delete(client, f"c{concurrency}"),
            rest_floor(calls, old, f"c{concurrency}"),
            driver_process,
        )
        floor["rest_calls_per_pair"] = len(calls)
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
    return {
        "latency_ms": latency_ms,
        "driver_delete_rest_calls": delete_calls,
        "rest_calls_replayed": [f"{c['method']} {c['url'].split('/v1/', 1)[-1]}" for c in calls],
        "rows": rows,
    }


def node_section(client: CsiClient, nodeops: NodeOps, rounds: int, base: Path) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="node-", dir=base))  # below the driver's --path-root
    scripts = {"shell": node_path.write_script(workdir), "guarded": node_path.write_script(workdir, True)}
    samples: dict[str, list[float]] = {"driver": [], "shell": [], "guarded": []}
    try:
        for r in range(rounds):
            for how in ("driver", "shell", "guarded"):
                samples[how].append(
                    node_path.timed_round(
                        client,
                        nodeops,
                        workdir / f"{how}-{r}",
                        f"bench-node-{how}-{r}-{uuid.uuid4().hex[:6]}",
                        how,
                        client if how == "driver" else None,
                        scripts.get(how, scripts["shell"]),
                    )
                )
    finally:
        unmount_under(str(workdir), nodeops)
        shutil.rmtree(workdir, ignore_errors=True)
    driver_summary, shell_summary = summarize(samples["driver"]), summarize(samples["shell"])
    guarded_summary = summarize(samples["guarded"])
    print(
        f"  NodeStage+NodePublish median {driver_summary['median_ms']} ms, "
        f"shell mkfs+mount+bind median {shell_summary['median_ms']} ms, "
        f"with the blkid guard {guarded_summary['median_ms']} ms"
    )
    return {
        "rounds": rounds,
        "volume_bytes": node_path.VOLUME_BYTES,
        "fs": node_path.FS,
        "driver_stage_publish": driver_summary,
        "shell_mkfs_mount_bind": shell_summary,
        "shell_guarded_mkfs_mount_bind": guarded_summary,
        "overhead_ms_median": round(driver_summary["median_ms"] - shell_summary["median_ms"], 2),
        # Each round runs the three sides one after the other, so a round's ratio compares
        # them under the same load; its median is the paired view beside the ratio of medians.
        "per_round_ratio_median": round(
            statistics.median(d / s for d, s in zip(samples["driver"], samples["shell"], strict=True)), 3
        ),
        # The requests carry CreateVolume's volume context, as kubelet's do for a provisioned PV.
        "volume_context": True,
    }


def results_section(result: dict[str, Any]) -> str:
    """The ``## CSI`` section of RESULTS.md, from the JSON result."""
    ctl, node = result["controller"], result["node"]
    lines = [
        "## CSI",
        "",
        "`benchmarks/csi_bench.py` (`sudo .venv/bin/python benchmarks/csi_bench.py`), "
        f"{result['when'][:10]}, "
        f"emulator (local node plus two virtual nodes, loop devices), Python {result['host']['python']}, "
        f"{result['host']['cpus']} CPUs, shared machine "
        f"(load average {result['host']['load_average_at_start'][0]} "
        "at the start, so absolute numbers vary from run to run; compare the driver with the floor measured "
        "right beside it). The driver runs as its own process "
        "(`python -m csi --mode all`) and is called over its unix socket, as a CO does.",
        "",
        f"**CreateVolume+DeleteVolume** (16 MiB raw block volumes, one replica on a virtual node, "
        "as in the core benchmark) with "
        f"**{ctl['latency_ms']} ms** injected into every LINSTOR REST call. The floor replays the same "
        f"{len(ctl['rest_calls_replayed'])} REST calls per pair ({', '.join(ctl['rest_calls_replayed'])}) "
        "through a bare `requests.Session` (the core benchmark's `Recorder`/`replay`) "
        "at the same concurrency. "
        "REST calls per pair for the driver come from its own Prometheus counter.",
        "",
        "| concurrency | pairs | driver pairs/s | floor pairs/s | driver/floor "
        "| driver pair ms, median (p95) | REST calls/pair | driver CPU ms/pair | driver CPUs busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in ctl["rows"]:
        d, f = row["driver"], row["rest_floor"]
        lines.append(
            f"| {row['concurrency']} | {d['pairs']} | {d['pairs_per_s']} | {f['pairs_per_s']} | "
            f"{row['driver_vs_floor']} | {d['pair_latency']['median_ms']} ({d['pair_latency']['p95_ms']}) | "
            f"{d['rest_calls_per_pair']} | {d.get('cpu_ms_per_pair', '-')} | "
            f"{d.get('cpu_busy_fraction', '-')} |"
        )
    ratios = {row["concurrency"]: row["driver_vs_floor"] for row in ctl["rows"]}
    busy = max(row["driver"].get("cpu_busy_fraction", 0.0) for row in ctl["rows"])
    cpu = [row["driver"].get("cpu_ms_per_pair", 0.0) for row in ctl["rows"]]
    serial = ctl["rows"][0]
    serial_extra = round(
        serial["driver"]["pair_latency"]["median_ms"] - serial["rest_floor"]["pair_latency"]["median_ms"], 2
    )
    same = all(
        row["driver"]["rest_calls_per_pair"] == row["rest_floor"]["rest_calls_per_pair"]
        for row in ctl["rows"]
    )
    deletes = ctl.get("driver_delete_rest_calls")
    lines += [
        "",
        (
            "The driver makes exactly the core's REST calls per pair, no extra lookups"
            if same
            else "The driver makes more REST calls per pair than the floor (see the table)"
        )
        + (f" (DeleteVolume alone: {deletes:g})" if deletes is not None else "")
        + f"; the pairs ran in {ctl['rows'][0]['driver'].get('rounds', 1)} rounds, driver and floor "
        "alternating, and driver/floor is "
        f"{', '.join(f'{r} at concurrency {c}' for c, r in ratios.items())}. Its own CPU time (from /proc) "
        f"is {min(cpu)}-{max(cpu)} ms per pair (two gRPC calls, protobuf, a JSON log line per call, the "
        f"REST client). At concurrency {serial['concurrency']} that work adds straight to each pair "
        f"({serial_extra} ms on the median pair); with more calls in flight it overlaps with LINSTOR's "
        f"work, and the driver kept at most {busy} of one CPU busy, so it is not the bottleneck there and "
        "the remaining differences to the floor, in either direction, are the noise of a shared 2-CPU "
        "machine running the emulator and the load generator beside it.",
    ]
    if node is None:
        return "\n".join([*lines, ""])
    drv, sh = node["driver_stage_publish"], node["shell_mkfs_mount_bind"]
    lines += [
        "",
        f"**NodeStage+NodePublish** of a fresh, blank {node['volume_bytes'] // MIB} MiB volume "
        f"({node['fs']}: blkid guard, mkfs, mount at the staging path, bind mount to the target), "
        f"{node['rounds']} rounds, beside a plain `sh` script doing the same mkfs, mount and bind on a fresh "
        "volume's device. "
        + (
            "Both requests carry the volume context CreateVolume returned and the publish context "
            "ControllerPublishVolume returned, as kubelet sends them for a provisioned PV:"
            if node.get("volume_context")
            else "These figures were measured before the node calls read only what they need from LINSTOR: "
            "each call then read the volume's definition and every replica (4 REST calls for the two), "
            "and the requests carried no volume context:"
        ),
        "",
        "| path | median ms | p95 ms |",
        "|---|---:|---:|",
        f"| driver: NodeStage + NodePublish | {drv['median_ms']} | {drv['p95_ms']} |",
        f"| shell: mkfs.ext4 + mount + mount --bind | {sh['median_ms']} | {sh['p95_ms']} |",
        *(
            [
                f"| shell with the driver's guard: `blkid -p` must find nothing, then the same "
                f"| {g['median_ms']} | {g['p95_ms']} |"
            ]
            if (g := node.get("shell_guarded_mkfs_mount_bind"))
            else []
        ),
        "",
        *(
            [
                f"Each of the {node['rounds']} rounds runs the driver, the script and the guarded script "
                "one after the other on a fresh volume each; the median of the rounds' driver/script "
                f"ratios is {paired:.2f}x, beside {drv['median_ms'] / sh['median_ms']:.2f}x for the "
                "ratio of the medians above.",
                "",
            ]
            if (paired := node.get("per_round_ratio_median"))
            else []
        ),
        f"The driver's extra {node['overhead_ms_median']} ms (median) is the safety work the script skips "
        "and the CSI calls themselves: two gRPC calls, what they read from LINSTOR (NodeStage reads "
        "the volume's device on this node, `GET .../resources/{node}/volumes/0`, then its definition "
        "while it probes the device, and changes nothing before that answer is in; NodePublish, right "
        "after it from the same staging path, uses what the stage read and makes no call), the "
        "libblkid probe of the device right before mkfs (the probe "
        "`blkid -p` makes, run in-process after asking the kernel to read ahead just the areas it "
        "reads, 528 KiB at the start, 512-768 KiB at the end and four pages; it also tells whether "
        "an existing ext4 needs its "
        "`e2fsck -p` check, a new one does not), and the mount-table checks, against one reading of "
        "the mount table per call. "
        + (
            f"Against the script with the same guard the driver takes "
            f"{drv['median_ms'] / g['median_ms']:.2f}x: "
            + (
                "what is left beyond the guard is mostly the gRPC round trips and the stage's REST "
                "round trip. "
                if drv["median_ms"] > g["median_ms"]
                else "its in-process probe costs less than starting `blkid`, more than making up "
                "for the gRPC round trips and the stage's REST round trip. "
            )
            if (g := node.get("shell_guarded_mkfs_mount_bind"))
            else ""
        )
        + "The mount and the bind mount are mount(2) calls in the driver. "
        "A filesystem the stage has just made "
        "fills its device, so no grow check runs after a fresh stage (it does on every later one). "
        "`benchmarks/node_ab.py` runs two revisions of the driver beside the script, interleaved, "
        "to judge a change to this path under the same load.",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--results-only",
        action="store_true",
        help="rewrite the RESULTS.md section from the last JSON, no run",
    )
    parser.add_argument("--latency-ms", type=int, default=20, help="latency injected per LINSTOR REST call")
    # At concurrency 32, 128 pairs were four waves of about a second in all: the ratio to the
    # floor moved by 0.1 from one run to the next. Twice the pairs, alternated twice as often.
    parser.add_argument("--pairs", type=int, default=256, help="create+delete pairs per concurrency level")
    parser.add_argument(
        "--rounds", type=int, default=8, help="alternating driver/floor rounds the pairs are split into"
    )
    parser.add_argument("--node-rounds", type=int, default=31, help="fresh volumes staged+published per side")
    parser.add_argument("--skip-node", action="store_true", help="measure the create+delete pairs only")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to write")
    parser.add_argument("--results", type=Path, default=RESULTS, help="the RESULTS.md to update")
    args = parser.parse_args()
    if args.results_only:
        write_results(results_section(json.loads(args.out.read_text())), args.results)
        return 0
    if os.geteuid() != 0:
        print("csi_bench: needs root (loop devices, mkfs, mount)", file=sys.stderr)
        return 1
    load_at_start = load_average()
    core_out = args.out.parent / CORE_OUT.name  # the core benchmark's JSON beside this one
    base = Path(tempfile.mkdtemp(prefix="csi-bench-"))
    emulator = start_emulator(base, nodes=("node-b", "node-c"))
    driver = None
    try:
        config = load_config({"controllers": emulator.url, "node_name": LOCAL}, env={}, config_file=None)
        service = VolumeService(LinstorClient(config), config)
        nodeops = NodeOps()
        driver = DriverProcess(emulator.url, base)
        print(f"CreateVolume+DeleteVolume with {args.latency_ms} ms injected controller latency:")
        controller = controller_section(
            emulator, driver.client, service, driver, args.latency_ms, args.pairs, max(1, args.rounds)
        )
        node = None
        if not args.skip_node:
            print("Node:")
            node = node_section(driver.client, nodeops, args.node_rounds, base)
    finally:
        if driver is not None:
            driver.stop()
        reset_and_stop([emulator], reset_timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    result = {
        "benchmark": "csi",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": host_facts(load_at_start),
        "controller": controller,
        "node": node,
        "core_bench": json.loads(core_out.read_text()) if core_out.exists() else None,
    }
    write_json(result, args.out)
    write_results(results_section(result), args.results)
    print(f"wrote {args.out} and the ## CSI section of {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

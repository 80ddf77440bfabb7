"""NodeStage+NodePublish of two revisions of the driver and the shell script, side by side.

A change to the node path is judged by its ratio to the shell script, and on a shared
machine the load moves both from minute to minute; so this runs the driver of a base
revision, the driver of the working tree and ``csi_bench``'s shell script against one
emulator, interleaved round by round (base, new, shell on a fresh blank volume each), so
the three see the same load. The base revision is exported with ``git archive`` into a
temporary directory and its driver runs from there.

    sudo .venv/bin/python benchmarks/node_ab.py --base main [--rounds 15] [--out FILE]

Prints the medians and ratios, and writes them with every sample to ``--out``
(``benchmarks/out/node_ab.json`` by default). Needs root (loop devices, mkfs, mount).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import grpc  # noqa: E402

from benchmarks.csi_bench import LOCAL, MIB, SHELL_STAGE_PUBLISH, DriverProcess, summarize  # noqa: E402
from csi.generated import csi_pb2  # noqa: E402
from csi.testing import CsiClient, block_cap, mount_cap, unmount_under  # noqa: E402
from plugin.node.ops import NodeOps  # noqa: E402
from testkit.emulator import EmulatorProcess, reset_and_stop  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "node_ab.json"
SIDES = ("base", "new", "shell")


def export_revision(revision: str, into: Path) -> str:
    """The tree of ``revision`` below ``into``; returns the commit it names."""
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--verify", f"{revision}^{{commit}}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    archive = subprocess.run(["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return commit


def fresh_device(client: CsiClient, name: str) -> tuple[str, dict[str, str], str]:
    """A new blank volume attached to this node: (id, publish context, device)."""
    volume = client.controller.CreateVolume(
        csi_pb2.CreateVolumeRequest(
            name=name,
            capacity_range=csi_pb2.CapacityRange(required_bytes=256 * MIB),
            volume_capabilities=[block_cap()],  # block-provisioned: nothing formats it
        )
    ).volume
    ctx = dict(
        client.controller.ControllerPublishVolume(
            csi_pb2.ControllerPublishVolumeRequest(
                volume_id=volume.volume_id, node_id=LOCAL, volume_capability=block_cap()
            )
        ).publish_context
    )
    return volume.volume_id, ctx, ctx["linstor.csi.linbit.com/device-path"]


def stage_and_publish(client: CsiClient, vid: str, staging: Path, target: Path, ctx: dict[str, str]) -> None:
    cap = mount_cap(fs_type="ext4")
    client.node.NodeStageVolume(
        csi_pb2.NodeStageVolumeRequest(
            volume_id=vid, staging_target_path=str(staging), volume_capability=cap, publish_context=ctx
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


def run_rounds(drivers: dict[str, DriverProcess], base: Path, rounds: int) -> dict[str, list[float]]:
    nodeops = NodeOps()
    control = drivers["new"].client
    script = base / "stage-publish.sh"
    script.write_text(SHELL_STAGE_PUBLISH)
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(rounds):
        for side in SIDES:
            vid, ctx, device = fresh_device(control, f"ab-{side}-{r}-{uuid.uuid4().hex[:6]}")
            nodeops.wait_for_device(device)
            # below the path root of the driver that serves this side
            work = base / (side if side in drivers else "new") / f"{side}-{r}"
            staging, target = work / "staging", work / "target"
            staging.mkdir(parents=True)
            start = time.perf_counter()
            if side == "shell":
                subprocess.run(["sh", str(script), device, str(staging), str(target)], check=True)
            else:
                stage_and_publish(drivers[side].client, vid, staging, target, ctx)
            samples[side].append(time.perf_counter() - start)
            if not os.path.ismount(target):
                raise RuntimeError(f"{side}: {target} is not mounted after stage and publish")
            unmount_under(str(work), nodeops)
            control.controller.ControllerUnpublishVolume(
                csi_pb2.ControllerUnpublishVolumeRequest(volume_id=vid, node_id=LOCAL)
            )
            delete_when_released(control, vid)
    return samples


def delete_when_released(client: CsiClient, vid: str, tries: int = 10) -> None:
    """DeleteVolume, tried again while the emulator still sees the device in use.

    On a shared machine another process may hold the just-unmounted device open for a
    moment (a scan of block devices), and the emulator refuses to detach it then, as DRBD
    would; that says nothing about the node path measured here.
    """
    for attempt in range(tries):
        try:
            client.controller.DeleteVolume(csi_pb2.DeleteVolumeRequest(volume_id=vid))
            return
        except grpc.RpcError as exc:
            if attempt == tries - 1 or "in use" not in (exc.details() or ""):
                raise
            time.sleep(0.2 * (attempt + 1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=15, help="fresh volumes per side")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to write")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("node_ab: needs root (loop devices, mkfs, mount)", file=sys.stderr)
        return 1
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    base = Path(tempfile.mkdtemp(prefix="node-ab-"))
    tree = base / "base-tree"
    tree.mkdir()
    commit = export_revision(args.base, tree)
    emulator = EmulatorProcess(state_dir=base / "state", dev_dir=base / "dev", nodes=("node-b",))
    emulator.start()
    drivers: dict[str, DriverProcess] = {}
    try:
        for side, repo in (("base", tree), ("new", REPO)):
            (base / side).mkdir()
            drivers[side] = DriverProcess(emulator.url, base / side, repo=repo)
        samples = run_rounds(drivers, base, args.rounds)
    finally:
        for driver in drivers.values():
            driver.stop()
        unmount_under(str(base), NodeOps())
        reset_and_stop([emulator], reset_timeout=60)
        shutil.rmtree(base, ignore_errors=True)
    summary = {side: summarize(values) for side, values in samples.items()}
    shell = summary["shell"]["median_ms"]
    result: dict[str, Any] = {
        "benchmark": "node_ab",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "base": {"revision": args.base, "commit": commit},
        "rounds": args.rounds,
        "load_average_at_start": load_at_start,
        "summary": summary,
        "ratio_to_shell": {side: round(summary[side]["median_ms"] / shell, 2) for side in ("base", "new")},
        "samples_ms": {side: [round(v * 1000, 2) for v in values] for side, values in samples.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average at start {load_at_start}; {args.rounds} rounds, interleaved")
    for side in SIDES:
        s = summary[side]
        ratio = f"  {result['ratio_to_shell'][side]}x the shell" if side != "shell" else ""
        label = f"base ({args.base} {commit[:10]})" if side == "base" else side
        print(f"  {label:<28} median {s['median_ms']:>7} ms  p95 {s['p95_ms']:>7} ms{ratio}")
    print(f"  median of the per-round ratios: {per_round_ratio(samples)}")
    print(f"wrote {args.out}")
    return 0


def per_round_ratio(samples: dict[str, list[float]]) -> dict[str, float]:
    """Each round's driver time over that round's shell time, medianed: steadier under moving load."""
    return {
        side: round(statistics.median(d / s for d, s in zip(samples[side], samples["shell"], strict=True)), 2)
        for side in ("base", "new")
    }


if __name__ == "__main__":
    sys.exit(main())

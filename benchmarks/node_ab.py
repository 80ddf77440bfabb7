"""NodeStage+NodePublish of two revisions of the driver and the shell script, side by side.

A change to the node path is judged by its ratio to the shell script, and on a shared
machine the load moves both from minute to minute; so this runs the driver of a base
revision, the driver of the working tree and ``csi_bench``'s shell script against one
emulator, interleaved round by round (base, new, shell on a fresh blank volume each, the
order reversed every other round), so the three see the same load. The base revision is
exported with ``git archive`` into a temporary directory and its driver runs from there.
Last, ``Identity.Probe`` round trips of the working tree's driver and of a bare gRPC server
(:mod:`benchmarks.bare_grpc`) show what the two CSI calls cost as transport alone.

    sudo .venv/bin/python benchmarks/node_ab.py --base main [--rounds 15] [--out FILE]

Prints the medians and ratios, and writes them with every sample to ``--out``
(``benchmarks/out/node_ab.json`` by default). Needs root (loop devices, mkfs, mount).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import bare_grpc, node_path  # noqa: E402
from benchmarks.common import load_average, start_emulator, summarize, write_json  # noqa: E402
from benchmarks.daemons import DriverProcess  # noqa: E402
from csi.testing import unmount_under  # noqa: E402
from plugin.node.ops import NodeOps  # noqa: E402
from testkit.emulator import reset_and_stop  # noqa: E402

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


def run_rounds(drivers: dict[str, DriverProcess], base: Path, rounds: int) -> dict[str, list[float]]:
    """Every side once per round, in an order that alternates from round to round.

    Each driver makes, attaches and deletes the volumes it stages itself (the script's come
    from the working tree's driver). A driver answers a call right after another about 1 ms
    sooner than one after a quiet spell (the Probe round trips printed at the end), so a
    driver that made every side's volumes would meet its own stages warm and the other
    driver's cold, and be favoured by about that much.
    """
    nodeops = NodeOps()
    script = node_path.write_script(base)
    samples: dict[str, list[float]] = {side: [] for side in SIDES}
    for r in range(rounds):
        for side in SIDES if r % 2 == 0 else SIDES[::-1]:
            # below the path root of the driver that serves this side
            work = base / (side if side in drivers else "new") / f"{side}-{r}"
            driver = drivers[side].client if side in drivers else None
            control = drivers.get(side, drivers["new"]).client
            name = f"ab-{side}-{r}-{uuid.uuid4().hex[:6]}"
            samples[side].append(node_path.timed_round(control, nodeops, work, name, side, driver, script))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="main", help="the revision to compare the working tree with")
    parser.add_argument("--rounds", type=int, default=15, help="fresh volumes per side")
    parser.add_argument("--out", type=Path, default=OUT, help="the JSON to write")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("node_ab: needs root (loop devices, mkfs, mount)", file=sys.stderr)
        return 1
    load_at_start = load_average()
    base = Path(tempfile.mkdtemp(prefix="node-ab-"))
    tree = base / "base-tree"
    tree.mkdir()
    commit = export_revision(args.base, tree)
    emulator = start_emulator(base, nodes=("node-b",))
    drivers: dict[str, DriverProcess] = {}
    try:
        for side, repo in (("base", tree), ("new", REPO)):
            (base / side).mkdir()
            drivers[side] = DriverProcess(emulator.url, base / side, repo=repo)
        samples = run_rounds(drivers, base, args.rounds)
        transport = {
            "driver_probe": bare_grpc.round_trips(drivers["new"].client.identity),
            "bare_grpc_probe": bare_grpc.transport_floor(base / "bare.sock"),
        }
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
        "grpc_round_trips_ms": transport,
        "samples_ms": {side: [round(v * 1000, 2) for v in values] for side, values in samples.items()},
    }
    write_json(result, args.out)
    print(f"load average at start {load_at_start}; {args.rounds} rounds, interleaved")
    for side in SIDES:
        s = summary[side]
        ratio = f"  {result['ratio_to_shell'][side]}x the shell" if side != "shell" else ""
        label = f"base ({args.base} {commit[:10]})" if side == "base" else side
        print(f"  {label:<28} median {s['median_ms']:>7} ms  p95 {s['p95_ms']:>7} ms{ratio}")
    print(f"  median of the per-round ratios: {per_round_ratio(samples)}")
    for name, trips in transport.items():
        print(
            f"  {name} round trip: {trips['back_to_back_ms']} ms back to back, "
            f"{trips['after_20ms_idle_ms']} ms after 20 ms idle"
        )
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

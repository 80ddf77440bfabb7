"""Run every benchmark, write their JSON, redraw the SVG and the targets table.

    sudo .venv/bin/python benchmarks/run_all.py           # the full run recorded in RESULTS.md
    sudo .venv/bin/python benchmarks/run_all.py --quick   # a few minutes, for development

The full run writes ``benchmarks/out/*.json``, ``benchmarks/results.svg`` and the sections
of ``benchmarks/RESULTS.md``. A quick run uses few iterations and stops the scale benchmark
at 1,000 volumes; so that its numbers are never mistaken for recorded ones it writes all of
that below ``benchmarks/out/quick/`` instead (a RESULTS.md there too). Each benchmark runs
as its own process, one after the other; the first that fails stops the run.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def steps(quick: bool, out: Path, results: Path) -> list[tuple[str, list[str]]]:
    """(name, arguments of ``python benchmarks/<name>.py``) in running order."""
    j = lambda name: str(out / f"{name}.json")  # noqa: E731
    r = str(results)
    if quick:
        return [
            ("emulator_bench", ["--iterations", "20", "--definitions", "200", "--out", j("emulator"),
                                "--record", "--results", r]),
            ("core_bench", ["--iterations", "5", "--out", j("core"), "--results", r]),
            ("csi_bench", ["--pairs", "16", "--node-rounds", "3", "--out", j("csi"), "--results", r]),
            ("docker_bench", ["--volumes", "1000", "--list-runs", "5", "--get-runs", "30", "--cycles", "2",
                              "--out", j("docker")]),
            ("scale_bench", ["--quick", "--out", j("scale")]),
            ("backup_bench", ["--size-mib", "64", "--rounds", "1", "--out", j("backup"), "--results", r]),
        ]  # fmt: skip
    return [
        ("emulator_bench", ["--out", j("emulator"), "--record", "--results", r]),
        ("core_bench", ["--iterations", "30", "--out", j("core"), "--results", r]),
        ("csi_bench", ["--out", j("csi"), "--results", r]),
        ("docker_bench", ["--out", j("docker")]),
        ("scale_bench", ["--out", j("scale")]),
        ("backup_bench", ["--out", j("backup"), "--results", r]),
    ]


def machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model or 'unknown model'}){mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}, load average {load} at the start"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short run, written to benchmarks/out/quick/")
    parser.add_argument("--only", default="", help="comma-separated benchmark names to run (default all)")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run_all: the benchmarks need root (loop devices, mkfs, mount)", file=sys.stderr)
        return 2
    out = HERE / "out" / "quick" if args.quick else HERE / "out"
    results = out / "RESULTS.md" if args.quick else HERE / "RESULTS.md"
    svg = out / "results.svg" if args.quick else HERE / "results.svg"
    out.mkdir(parents=True, exist_ok=True)
    if args.quick and not results.exists():
        results.write_text("# Benchmark results (quick run, not recorded)\n")
    print(f"machine: {machine()}")
    wanted = {n for n in args.only.split(",") if n}
    for name, bench_args in steps(args.quick, out, results):
        if wanted and name not in wanted:
            continue
        print(f"== {name} {' '.join(bench_args)}", flush=True)
        start = time.monotonic()
        done = subprocess.run([sys.executable, str(HERE / f"{name}.py"), *bench_args], cwd=REPO)
        if done.returncode != 0:
            print(f"run_all: {name} failed (exit {done.returncode}); stopping", file=sys.stderr)
            return 1
        print(f"== {name} took {time.monotonic() - start:.0f} s", flush=True)
    from benchmarks import plot, targets  # after the runs: they read the JSON just written

    plot.main(["--out-dir", str(out), "--svg", str(svg)])
    targets.write_section(targets.section(out, machine_facts=machine()), results)
    print(f"wrote the ## Targets section of {results}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    raise SystemExit(main())

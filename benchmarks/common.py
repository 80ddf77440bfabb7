"""What every benchmark needs the same way: its emulator, host facts, summaries, /proc readings, output.

How the benchmarks measure and report lives here once, so one change here changes every
benchmark's figures alike, and two benchmarks never describe the same machine or the
same median differently. Starting processes is :mod:`testkit`'s, shared with the tests.
"""

from __future__ import annotations

import atexit
import json
import os
import platform
import shutil
import socket
import statistics
import tempfile
from pathlib import Path
from typing import Any

from testkit.emulator import EmulatorProcess

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
LOCAL = socket.gethostname().split(".")[0] or "localhost"
MIB = 1024**2


def load_average() -> list[float]:
    """The load average now: other work on a shared machine skews results, so each run records it."""
    return [round(x, 2) for x in os.getloadavg()]


def host_facts(load_at_start: list[float]) -> dict[str, Any]:
    """The machine a result was measured on, as every benchmark's JSON records it."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "load_average_at_start": load_at_start,
    }


def summarize(samples: list[float]) -> dict[str, float]:
    """Count, median, p95, min and max of ``samples`` (seconds), in milliseconds."""
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 2),
        "min_ms": round(ordered[0] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time process ``pid`` has used so far.

    Unlike wall time it barely moves with the load of a shared machine, so it shows a
    daemon's own cost.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` (VmRSS), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS line in /proc/{pid}/status: a kernel thread, or a process exiting")


def write_results(section: str, path: Path) -> None:
    """Replace only ``section``'s own part of the RESULTS.md at ``path``, or append it.

    The section's first line is its ``## `` heading; it runs to the next ``## `` heading.
    The other sections belong to other benchmarks and are left as they are.
    """
    heading = section.splitlines()[0].strip()
    text = path.read_text() if path.exists() else "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == heading), None)
    if start is None:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    path.write_text(text)


#: Memory-backed storage for the emulator's state, where the machine has it.
MEMORY_DIR = Path("/dev/shm")


def state_dir_for(base: Path) -> Path:
    """Where a benchmark's emulator keeps its state: in memory when the machine allows, else below ``base``.

    The emulator fsyncs its journal after every mutation, as LINSTOR commits its database.
    On a shared VM's disk those fsyncs now and then take a few hundred milliseconds, and
    every request waits behind them, the driver's and the floor's alike: noise as large as
    the differences measured. So the state files live in tmpfs (removed when the benchmark
    ends), while the storage pools, the volumes' backing files that mkfs and mount work on
    through loop devices, stay on disk below ``base``: the state directory's ``pools`` is
    a link to ``base/pools``.
    """
    if not (MEMORY_DIR.is_dir() and os.access(MEMORY_DIR, os.W_OK)):
        return base / "state"
    memory = Path(tempfile.mkdtemp(prefix="bench-emulator-", dir=MEMORY_DIR))  # its log goes here too
    atexit.register(shutil.rmtree, memory, ignore_errors=True)
    state = memory / "state"
    state.mkdir()
    pools = base / "pools"
    pools.mkdir(parents=True, exist_ok=True)
    (state / "pools").symlink_to(pools, target_is_directory=True)
    return state


def start_emulator(
    base: Path, nodes: tuple[str, ...] = (), extra_args: tuple[str, ...] = (), timeout: float = 30.0
) -> EmulatorProcess:
    """A private emulator (this node plus virtual ``nodes``) with its devices below ``base``, started.

    Its state is kept where :func:`state_dir_for` says. One that does not start ends the
    benchmark with the emulator's own words (its log tail).
    """
    emulator = EmulatorProcess(
        state_dir=state_dir_for(base), dev_dir=base / "dev", nodes=nodes, extra_args=extra_args
    )
    try:
        emulator.start(timeout=timeout)
    except RuntimeError as exc:
        raise SystemExit(f"the emulator did not start: {exc}") from None
    return emulator


def write_json(result: dict[str, Any], path: Path, announce: bool = False) -> None:
    """Write a benchmark's result as indented JSON, making its directory if needed.

    With ``announce`` it says where, relative to the repository when it lies inside it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    if announce:
        print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")

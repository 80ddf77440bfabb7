"""How long each daemon takes from start to ready, and how much memory it holds at rest.

"Ready" is what an operator waits for, not merely a socket file (the checks are
:mod:`benchmarks.daemons`'s): the CSI driver's ``Identity.Probe`` says ready and its gRPC
health service says ``SERVING``; the Docker plugin answers ``Plugin.Activate`` and its
``/health`` says the controller is reachable.

The clock starts just before the process is spawned and the readiness checks are polled
every 10 ms, so a figure includes interpreter start, imports and everything the daemon
does before it answers. The CPU time the daemon used until then is recorded beside it
(``*_ready_cpu_ms``): on a loaded machine it varies far less than the wall time.

The daemons run as installed, with compiled bytecode: an environment with
``PYTHONDONTWRITEBYTECODE`` would make every start compile the project's sources again
(about a third of the import time here), which no installed daemon does; the bytecode goes
to a private ``PYTHONPYCACHEPREFIX`` and one unmeasured start fills it.

Each daemon is started ``--runs`` times against one emulator; medians are reported.
``--baseline DIR`` runs the same rounds from another copy of the source tree (say
``git archive`` of an earlier commit) interleaved with this one, so a before/after
comparison sees the same machine load.

    sudo .venv/bin/python benchmarks/startup_bench.py [--runs 7] [--baseline DIR]

Writes ``benchmarks/out/startup.json``. ``scale_bench.py`` runs the same rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import host_facts, load_average, start_emulator, write_json  # noqa: E402
from benchmarks.daemons import medians, one_round, run_as_installed  # noqa: E402
from testkit.emulator import reset_and_stop  # noqa: E402

OUT = REPO / "benchmarks" / "out" / "startup.json"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="starts of each daemon (default: %(default)s)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds at rest before reading memory")
    ap.add_argument("--baseline", type=Path, help="another source tree to run interleaved, for comparison")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("startup_bench: needs root (the emulator's loop devices)", file=sys.stderr)
        return 2
    sources = {"this": REPO}
    if args.baseline is not None:
        sources["baseline"] = args.baseline.resolve()
    load_at_start = load_average()
    base = Path(tempfile.mkdtemp(prefix="startup-bench-"))
    run_as_installed(os.environ, base / "pycache")
    emulator = start_emulator(base, extra_args=("--log-level", "WARNING"))
    rows: dict[str, list[dict[str, float]]] = {name: [] for name in sources}
    try:
        for source in sources.values():
            one_round(source, emulator.url, base, settle=0)  # compiles the bytecode; not measured
        for run in range(args.runs):
            for name, source in sources.items():
                row = one_round(source, emulator.url, base, args.settle)
                rows[name].append(row)
                print(f"  run {run + 1} {name}: {row}")
    finally:
        reset_and_stop([emulator])
        shutil.rmtree(base, ignore_errors=True)
    summary = {name: medians(samples) for name, samples in rows.items()}
    for name, figures in summary.items():
        print(f"median {name}: {figures}")
    result: dict[str, Any] = {
        "benchmark": "startup",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": args.runs,
        "host": host_facts(load_at_start),
        "medians": summary,
        "rows": rows,
    }
    write_json(result, args.out, announce=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
